"""``--defense restorers``: the paper's pipeline with every available restoration network.

Mustafa et al. (IEEE TIP 2020) claim that deep image restoration networks in general map
adversarial images back towards the natural-image manifold. This module puts that claim to
the test in one run:

* :func:`expand_restorers` turns the group spec into defense specs: the paper's pipeline
  (wavelet denoising, then the network) with waifu2x ``upconv7`` plain and at each shipped
  noise level, bicubic and nearest interpolation as non-learned controls, and every EDSR or
  spandrel checkpoint and learned denoiser the user passes.
* :func:`restoration_psnr` measures how good each pipeline is *as a restorer*: the bundled
  photos (192 x 192 centre crops) are downscaled by the pipeline's factor (bicubic,
  antialiased), restored, and compared with the originals (PSNR, dB). This is the quality of
  the network on clean images at its own task, independent of the classifier.
* :func:`restorers_report` / :func:`section_restorers` answer "does a better restoration
  network defend better?": PSNR against accuracy under attack, as a table and a plot, with the
  rank correlation.

Group spec (keys may repeat; a file path must not contain ``:`` or ``,``)::

    restorers                                   # upconv7 (plain, noise 0..3), bicubic, nearest
    restorers:edsr=edsr_baseline_x2-1bc95232.pt # + the paper's EDSR-baseline
    restorers:spandrel=RealESRGAN_x4plus.pth:spandrel=swinir.pth   # + spandrel SR checkpoints
    restorers:denoiser=drunet_color.pth         # + a learned denoiser in place of wavelet
    restorers:wd=false                          # the networks alone (no wavelet step)
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.samples import embedded_samples
from ..purification.registry import create_defense, parse_defense_spec
from .document import Figure, Section, Table
from .metrics import psnr

GROUP = "restorers"
"""The group name accepted by ``--defense``."""

UPCONV7_LEVELS: tuple[int | None, ...] = (None, 0, 1, 2, 3)
"""waifu2x noise levels in the group (``None``: the plain x2 model)."""

_FILE_KEYS = ("edsr", "spandrel", "denoiser")


@dataclass(frozen=True)
class Restorer:
    """One member of the group.

    Attributes:
        defense: the defense spec evaluated (``"paper:sr_model=upconv7:noise=2"``).
        network: a short label (``"upconv7 noise=2"``).
        kind: ``"learned SR"``, ``"learned denoiser"`` or ``"control"`` (no learning).
    """

    defense: str
    network: str
    kind: str


def parse_restorers_spec(spec: str) -> dict[str, Any]:
    """Parse ``restorers[:key=value...]``; ``edsr``, ``spandrel`` and ``denoiser`` may repeat.

    Returns:
        ``{"wd": bool, "edsr": [...], "spandrel": [...], "denoiser": [...]}``.

    Raises:
        ValueError: not the group, an unknown key, a malformed part or a missing file.
    """
    name, *parts = spec.strip().split(":")
    if name != GROUP:
        raise ValueError(f"expected the defense group {GROUP!r}, got {name!r}")
    opts: dict[str, Any] = {"wd": True, **{k: [] for k in _FILE_KEYS}}
    for part in parts:
        key, eq, value = part.partition("=")
        key, value = key.strip().replace("-", "_"), value.strip()
        if not eq or not key or not value:
            raise ValueError(f"defense {spec!r}: expected 'restorers:key=value', got {part!r}")
        if key == "wd":
            if value.lower() not in ("true", "false"):
                raise ValueError(f"defense {spec!r}: wd expects true or false, got {value!r}")
            opts["wd"] = value.lower() == "true"
        elif key in _FILE_KEYS:
            if not Path(value).is_file():
                raise ValueError(f"defense {spec!r}: {key} file not found: {value}")
            opts[key].append(value)
        else:
            raise ValueError(
                f"defense {spec!r}: unknown key {key!r}; known: wd, {', '.join(_FILE_KEYS)} "
                "(a file path must not contain ':' or ',')"
            )
    return opts


def restorer_group(spec: str = GROUP) -> list[Restorer]:
    """The members of the group ``spec`` (see the module docstring), in evaluation order."""
    opts = parse_restorers_spec(spec)
    base = "paper" if opts["wd"] else "sr"

    def sr(model: str) -> str:
        return f"{base}:sr_model={model}"

    out = [Restorer(base, "upconv7", "learned SR")]
    out += [
        Restorer(sr(f"upconv7:noise={lvl}"), f"upconv7 noise={lvl}", "learned SR")
        for lvl in UPCONV7_LEVELS
        if lvl is not None
    ]
    out += [Restorer(sr(f"edsr:sr_weights={f}"), f"edsr {Path(f).name}", "learned SR") for f in opts["edsr"]]
    out += [
        Restorer(sr(f"spandrel:sr_weights={f}"), f"spandrel {Path(f).name}", "learned SR")
        for f in opts["spandrel"]
    ]
    out += [  # the learned denoiser in place of the wavelet step, then upconv7
        Restorer(
            f"paper:denoiser=spandrel:denoiser_weights={f}",
            f"denoiser {Path(f).name} + upconv7",
            "learned denoiser",
        )
        for f in opts["denoiser"]
    ]
    out += [Restorer(sr(m), m, "control") for m in ("bicubic", "nearest")]
    return out


def expand_restorers(spec: str = GROUP) -> list[str]:
    """The defense specs of the group (the hook used by ``resolve_defense_names``)."""
    return [r.defense for r in restorer_group(spec)]


def is_restorers_spec(spec: str) -> bool:
    """Whether ``spec`` names the group (``restorers`` or ``restorers:...``)."""
    return spec.strip().split(":")[0] == GROUP


# ---------------------------------------------------------------------------- restoration PSNR
def sample_crops(size: int = 192, n: int | None = None) -> Any:
    """The bundled ImageNet photos as centre crops (N, 3, size, size) in [0, 1].

    Raises:
        srdefense.data.samples.SamplesNotFoundError: the photos are not installed.
    """
    crops = []
    im: Image.Image  # an ImageFile when opened, a plain Image once converted
    for path, _ in embedded_samples()[:n]:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = min(size, w, h)
            im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
            if s != size:
                im = im.resize((size, size), Image.Resampling.BICUBIC)
            crops.append(torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255)
    return torch.stack(crops)


def restoration_psnr(defense: Any, hr: Any, *, batch_size: int = 10) -> float:
    """Mean PSNR (dB) of a purifier as a restorer of downscaled clean images.

    ``hr`` is downscaled by the purifier's ``scale`` (bicubic, antialiased; unchanged for
    scale 1), purified, and compared with ``hr`` (cropped to a multiple of the scale).

    Args:
        defense: a purifier (``nn.Module`` with an integer ``scale``), or a defense spec.
        hr: clean images (N, 3, H, W) in [0, 1].
        batch_size: images per forward.

    Returns:
        The mean PSNR over the images.
    """
    if isinstance(defense, str):
        defense = create_defense(defense)
    s = int(getattr(defense, "scale", 1))
    h, w = (hr.shape[-2] // s) * s, (hr.shape[-1] // s) * s
    hr = hr[..., :h, :w]
    lr = hr if s == 1 else F.interpolate(hr, size=(h // s, w // s), mode="bicubic", antialias=True)
    lr = lr.clamp(0, 1)
    vals = []
    defense = defense.eval()
    with torch.no_grad():
        for i in range(0, hr.shape[0], batch_size):
            y = defense(lr[i : i + batch_size])
            if y.shape[-2:] != (h, w):  # e.g. a 'native' resolution policy: compare at that size
                ref = F.interpolate(hr[i : i + batch_size], size=y.shape[-2:], mode="bicubic", antialias=True)
            else:
                ref = hr[i : i + batch_size]
            vals += psnr(y.clamp(0, 1), ref.clamp(0, 1)).tolist()
    return sum(vals) / len(vals)


@functools.lru_cache(maxsize=64)
def _cached_psnr(spec: str, n: int | None) -> float | None:
    try:
        return restoration_psnr(spec, sample_crops(n=n))
    except Exception:  # noqa: BLE001 - missing samples or weights: the table shows '-'
        return None


def measure_restoration_psnr(specs: Sequence[str], *, n: int | None = None) -> dict[str, float | None]:
    """:func:`restoration_psnr` of each defense spec on the bundled photos (cached per process).

    ``None`` where it cannot be measured (photos or weights missing).
    """
    return {s: _cached_psnr(s, n) for s in specs}


# ---------------------------------------------------------------------------- report section
@dataclass
class RestorersReport:
    """The section's content.

    Attributes:
        rows: one dict per network: ``number`` (the plot's label), ``defense``, ``network``,
            ``kind``, ``psnr``, ``fidelity_psnr``, ``clean``, ``attacked`` (accuracies in
            [0, 1] or ``None``).
        attacked_key: the summary column used as "accuracy under attack".
        spearman: rank correlation of ``psnr`` and ``attacked`` (``None`` if < 3 points).
        table: the table (:class:`srdefense.evaluation.report.Table`).
        markdown: the table as Markdown; ``html``: as HTML; ``png``: the plot (or ``None``).
    """

    rows: list[dict[str, Any]]
    attacked_key: str
    spearman: float | None
    table: Any
    markdown: str
    html: str
    png: bytes | None


def _label_for(defense: str) -> tuple[str, str]:
    try:
        name, params = parse_defense_spec(defense)
    except ValueError:
        return defense, "other"
    if name in ("nearest", "bicubic"):
        return name, "control"
    if name not in ("paper", "sr"):
        return defense, "other"
    extra = [f"{k}={v}" for k, v in params.items() if k not in ("sr_model", "sr_weights", "denoiser_weights")]
    model = str(params.get("sr_model", "upconv7"))
    weights = params.get("sr_weights")
    net = model if weights is None else f"{model} {Path(str(weights)).name}"
    if params.get("denoiser") in ("spandrel", "wavelet+spandrel"):
        net = f"denoiser {Path(str(params.get('denoiser_weights'))).name} + {net}"
        kind = "learned denoiser"
    else:
        kind = "control" if model in ("bicubic", "nearest") else "learned SR"
    if name == "sr":
        extra.append("no wd")
    extra = [e for e in extra if not e.startswith("denoiser=")]
    return (net + (f" ({', '.join(extra)})" if extra else "")), kind


def _network_of(defense: str) -> str:
    name, params = parse_defense_spec(defense)
    params = {k: v for k, v in params.items() if k not in _NOT_NETWORK}
    params.setdefault("sr_model", name if name in ("nearest", "bicubic") else "upconv7")
    params.setdefault("denoiser", "wavelet")
    return "|".join(f"{k}={v}" for k, v in sorted(params.items()))


_NOT_NETWORK = (
    "sigma",
    "wavelet",
    "method",
    "mode",
    "convert2ycbcr",
    "legacy_sigma",
    "resolution",
    "tile_size",
    "wd",
    "jpeg_quality",
)


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties); ``None`` for < 3 points or no spread."""
    if len(x) != len(y) or len(x) < 3:
        return None
    rx, ry = _ranks(list(x)), _ranks(list(y))
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = math.sqrt(sum((a - mx) ** 2 for a in rx))
    vy = math.sqrt(sum((b - my) ** 2 for b in ry))
    if vx == 0 or vy == 0:
        return None
    return cov / (vx * vy)


def _attacked_key(summary: Sequence[Mapping[str, Any]]) -> str | None:
    # robust accuracy (every attack of every setting) when the run has it, else the worst case
    keys = [r.get("column", r["key"]) for r in summary]
    robust = [r.get("column", r["key"]) for r in summary if r["attack"] == "robust"]
    if "robust" in robust:
        return "robust"
    if robust:
        return robust[0]
    if "worst-case" in keys:
        return "worst-case"
    worst = [k for k in keys if str(k).startswith("worst-case")]
    if worst:
        return worst[0]
    attacks = [r.get("column", r["key"]) for r in summary if r["attack"] != "none"]
    return attacks[0] if attacks else None


def _plot(rows: list[dict[str, Any]], attacked_title: str) -> bytes | None:
    pts = [r for r in rows if r["psnr"] is not None and r["attacked"] is not None]
    if len(pts) < 2:
        return None
    # lazy: matplotlib takes about half a second to import; only a figure needs it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(6.4, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colors = {"learned SR": "tab:blue", "learned denoiser": "tab:green", "control": "tab:gray"}
    for kind, color in colors.items():
        sel = [r for r in pts if r["kind"] == kind]
        if sel:
            ax.scatter([r["psnr"] for r in sel], [100 * r["attacked"] for r in sel], color=color, label=kind)
    seen: dict[tuple[float, float], int] = {}
    for r in pts:  # numbered as in the table's first column; coinciding points stack their numbers
        xy = (round(r["psnr"], 1), round(100 * r["attacked"], 1))
        k = seen.get(xy, 0)
        seen[xy] = k + 1
        ax.annotate(
            str(r["number"]),
            (r["psnr"], 100 * r["attacked"]),
            fontsize=8,
            xytext=(4, 4 + 9 * k),
            textcoords="offset points",
        )
    ax.set_xlabel("restoration PSNR on clean photos (dB)")
    ax.set_ylabel(f"accuracy under attack (%), {attacked_title}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def restorers_report(
    summary: Sequence[Mapping[str, Any]],
    quality: Sequence[Mapping[str, Any]],
    defenses: Sequence[str],
    psnr: Mapping[str, float | None],
) -> RestorersReport | None:
    """Build the section "does a better restoration network defend better?".

    Args:
        summary: the results' summary rows (``defense``, ``attack``, ``key``, ``accuracy``).
        quality: the results' quality rows (``defense``, ``psnr``): fidelity of each defense's
            output on the run's clean images.
        defenses: the defenses to show (group members present in the run), in order.
        psnr: restoration PSNR per defense (:func:`measure_restoration_psnr`).

    Returns:
        The report, or ``None`` with fewer than two networks.
    """
    acc = {(r["defense"], r.get("column", r["key"])): r["accuracy"] for r in summary}
    fid = {q["defense"]: q.get("psnr") for q in quality}
    key = _attacked_key([r for r in summary if r["defense"] in defenses])
    if key is None or len(defenses) < 2:
        return None
    rows: list[dict[str, Any]] = []
    for d in defenses:
        network, kind = _label_for(d)
        rows.append(
            {
                "number": len(rows) + 1,
                "defense": d,
                "network": network,
                "kind": kind,
                "psnr": psnr.get(d),
                "fidelity_psnr": fid.get(d),
                "clean": acc.get((d, "clean")),
                "attacked": acc.get((d, key)),
            }
        )
    pts = [r for r in rows if r["psnr"] is not None and r["attacked"] is not None]
    rho = spearman([r["psnr"] for r in pts], [r["attacked"] for r in pts])

    def db(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}"

    title = key.replace("@", " ").replace("worst-case", "worst case")
    table = Table(
        [
            "#",
            "network",
            "kind",
            "restoration PSNR (dB)",
            "fidelity PSNR (dB)",
            "clean acc. (%)",
            f"acc. under attack (%), {title}",
            "defense spec",
        ],
        [
            [
                str(r["number"]),
                r["network"],
                r["kind"],
                db(r["psnr"]),
                db(r["fidelity_psnr"]),
                pct(r["clean"]),
                pct(r["attacked"]),
                r["defense"],
            ]
            for r in rows
        ],
        shade=[[None, None, None, None, None, r["clean"], r["attacked"], None] for r in rows],
        text_columns=(1, 2, 7),
    )
    return RestorersReport(rows, key, rho, table, table.markdown(), table.html(), _plot(rows, title))


def section_restorers(results: Any, psnr: Mapping[str, float | None] | None = None) -> Any:
    """Report section for the restoration networks in ``results``.

    Shown when the run holds at least two different learned networks (as ``--defense
    restorers`` does); controls (bicubic, nearest) are added to the comparison.

    Args:
        results: :class:`srdefense.evaluation.results.Results`.
        psnr: restoration PSNR per defense; default: measured on the bundled photos
            (:func:`measure_restoration_psnr`, a few seconds per network on a CPU).
    """
    members = [d for d in results.defenses if _label_for(d)[1] != "other"]
    learned = {_network_of(d) for d in members if _label_for(d)[1] != "control"}
    if len(learned) < 2:  # one network (e.g. the demo's paper + sr): nothing to compare
        return None
    if psnr is None:
        psnr = measure_restoration_psnr(members)
    rep = restorers_report(results.summary, results.quality, members, psnr)
    if rep is None:
        return None
    rho = "-" if rep.spearman is None else f"{rep.spearman:+.2f}"
    text = [
        "Does a better restoration network defend better? Restoration PSNR: the 20 bundled photos (192 x "
        "192 centre crops) downscaled by the pipeline's factor (bicubic, antialiased), restored by the "
        "pipeline, compared with the originals; a property of the network, independent of the "
        "classifier. Fidelity PSNR: the defense's output on this run's clean images against the clean "
        "image (bicubically upscaled to the same size), as in the quality section.",
        f"Spearman rank correlation between restoration PSNR and accuracy under attack "
        f"({rep.attacked_key}) over the {sum(r['psnr'] is not None for r in rep.rows)} networks: {rho}. "
        "With few networks and images this is a description, not a test; the accuracy intervals are "
        "in the accuracy table.",
    ]
    figs = []
    if rep.png is not None:
        figs.append(
            Figure(
                "restorers_psnr_vs_accuracy",
                rep.png,
                "Restoration PSNR against accuracy under attack, one point per network (# as in the table).",
                "restoration PSNR against accuracy",
            )
        )
    return Section(
        "Does a better restoration network defend better?", text=text, tables=[rep.table], figures=figs
    )
