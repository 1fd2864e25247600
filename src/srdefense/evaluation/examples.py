"""Example images for the report: clean, adversarial and purified, with predictions.

Kept small (thumbnails) and saved as PNG under ``out/examples/`` with an ``examples.json``
index, so a resumed run and :meth:`Results.load` show the same grid.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..data.transforms import resize_to
from ..purification.compose import Defended
from .io import atomic_write_bytes, atomic_write_json
from .loader import Batch
from .plan import Plan, _seed_of
from .scoring import Attacker, seeded

THUMBNAIL = 192
"""Longest side of the example thumbnails, in pixels."""


def thumbnail(image: Tensor, size: int = THUMBNAIL) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (h, w, 3) uint8 with the longest side at most ``size``."""
    x = image.detach().float().cpu().clamp(0, 1).unsqueeze(0)
    h, w = x.shape[-2:]
    s = min(1.0, size / max(h, w))
    if s < 1.0:
        x = resize_to(x, (max(1, round(h * s)), max(1, round(w * s))))
    return (x[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60] or "x"


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def save_examples(out: str | Path, examples: list[dict[str, Any]]) -> None:
    """Write the example images as PNG and their metadata as ``examples/examples.json``."""
    d = Path(out) / "examples"
    meta = []
    for i, ex in enumerate(examples):
        files = {"clean": f"{i:02d}_clean.png", "adversarial": f"{i:02d}_adversarial.png"}
        atomic_write_bytes(d / files["clean"], _png_bytes(ex["clean"]))
        atomic_write_bytes(d / files["adversarial"], _png_bytes(ex["adversarial"]))
        purified_files = {}
        for name, arr in ex["purified"].items():
            fn = f"{i:02d}_purified_{_slug(name)}.png"
            atomic_write_bytes(d / fn, _png_bytes(arr))
            purified_files[name] = fn
        m = {k: v for k, v in ex.items() if k not in ("clean", "adversarial", "purified")}
        m["files"] = {**files, "purified": purified_files}
        meta.append(m)
    atomic_write_json(d / "examples.json", meta)


def load_examples(out: str | Path) -> list[dict[str, Any]]:
    """Read what :func:`save_examples` wrote (an empty list when there is nothing)."""
    d = Path(out) / "examples"
    index = d / "examples.json"
    if not index.exists():
        return []
    meta = json.loads(index.read_text(encoding="utf-8"))
    out_list = []
    for m in meta:
        files = m.pop("files")
        ex = dict(m)
        ex["clean"] = _read_png(d / files["clean"])
        ex["adversarial"] = _read_png(d / files["adversarial"])
        ex["purified"] = {k: _read_png(d / fn) for k, fn in files["purified"].items()}
        out_list.append(ex)
    return out_list


def make_examples(
    plan: Plan,
    attacker: Attacker,
    batch: Batch,
    x: Tensor,
    y: Tensor,
    k: int,
    names: list[str] | None,
) -> list[dict[str, Any]]:
    """The report's examples: the first ``k`` samples of ``batch``, clean, attacked and purified.

    The attack is the largest-budget one of the first setting; each defense's purified image
    and prediction are drawn with seeds of their own, so the examples do not move the numbers.
    """
    setting = plan.settings[0]
    runs = plan.runs[setting]
    bounded = [r for r in runs if r.eps is not None]
    run = max(bounded, key=lambda r: r.eps or 0.0) if bounded else runs[0]
    k = min(k, x.shape[0])
    ids = batch.ids[:k]
    xs = x[:k]
    ys = y[:k]
    first = next(iter(plan.defenses))
    target0 = plan.target(setting, first)
    adv_full, _ = attacker(target0, run, x, y, batch.ids)
    xa = adv_full[:k]
    with torch.no_grad():
        clean_pred = plan.classifier(xs).argmax(1).tolist()
        adv_pred = plan.classifier(xa).argmax(1).tolist()
    purified: dict[str, Tensor] = {}
    purified_pred: dict[str, list[int]] = {}
    for name in plan.defenses:
        target = plan.target(setting, name)
        if plan.adaptive(setting):
            xa_d = attacker(target, run, x, y, batch.ids)[0][:k]
        else:
            xa_d = xa
        scorer = target.scorer
        assert isinstance(scorer, Defended)
        with torch.no_grad(), seeded(scorer, _seed_of("example", plan.seed, name, run.key, ids), x.device):
            logits, xp = scorer.purify_and_classify(xa_d)
        purified[name] = xp
        purified_pred[name] = logits.argmax(1).tolist()

    def nm(c: int) -> str:
        return names[c] if names is not None and 0 <= c < len(names) else str(c)

    out = []
    for i in range(k):
        preds = {n: purified_pred[n][i] for n in plan.defenses}
        out.append(
            {
                "id": ids[i],
                "label": int(ys[i]),
                "label_name": nm(int(ys[i])),
                "attack": run.key,
                "setting": setting,
                "clean_pred": clean_pred[i],
                "clean_pred_name": nm(clean_pred[i]),
                "adversarial_pred": adv_pred[i],
                "adversarial_pred_name": nm(adv_pred[i]),
                "purified_pred": preds,
                "purified_pred_name": {n: nm(c) for n, c in preds.items()},
                "clean": thumbnail(xs[i]),
                "adversarial": thumbnail(xa[i]),
                "purified": {n: thumbnail(purified[n][i]) for n in plan.defenses},
            }
        )
    return out
