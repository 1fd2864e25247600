"""The report's figures: matplotlib's Agg canvas (no pyplot, no global state), returned as PNG bytes."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from .results import CLEAN, ROBUST, WORST, Results
from .tables import column_title


# ---------------------------------------------------------------------------- plots
def _canvas(width: float, height: float) -> Any:
    # lazy: matplotlib takes about half a second to import; only a figure needs it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def plot_heatmap(results: Results) -> bytes | None:
    """Heatmap of accuracy (%) per defense (rows) and column (clean, attacks, worst cases)."""
    keys = results.columns()
    defs = results.defenses
    if not keys or not defs:
        return None
    m = np.array(
        [
            [
                np.nan if results.row(d, k)["accuracy"] is None else 100 * results.row(d, k)["accuracy"]
                for k in keys
            ]
            for d in defs
        ]
    )
    fig = _canvas(1.2 + 0.95 * len(keys), 1.0 + 0.45 * len(defs))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(m, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(keys)), [column_title(results, k) for k in keys], rotation=35, ha="right")
    ax.set_yticks(range(len(defs)), defs)
    for i in range(len(defs)):
        for j in range(len(keys)):
            if not np.isnan(m[i, j]):
                color = "white" if m[i, j] < 20 or m[i, j] > 85 else "black"
                ax.text(j, i, f"{m[i, j]:.0f}", ha="center", va="center", fontsize=9, color=color)
    fig.colorbar(im, ax=ax, label="accuracy (%)")
    ax.set_title(f"accuracy, {results.setting}")
    return _png(fig)


def plot_accuracy_vs_eps(results: Results) -> bytes | None:
    """Accuracy (%) against eps (x 255), one panel per bounded attack, one line per defense."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    several = len(results.settings) > 1
    for r in results.summary:
        if r["attack"] in (CLEAN, WORST, ROBUST) or r["eps"] is None or r["defense"] != results.defenses[0]:
            continue
        panel = f"{r['setting']} {r['attack']}" if several else r["attack"]
        by_name.setdefault(panel, []).append({"eps": r["eps"], "key": r["column"]})
    if not by_name:
        return None
    names = list(by_name)
    ncols = min(3, len(names))
    nrows = (len(names) + ncols - 1) // ncols
    fig = _canvas(4.2 * ncols, 3.2 * nrows)
    for idx, name in enumerate(names):
        ax = fig.add_subplot(nrows, ncols, idx + 1)
        confs = sorted(by_name[name], key=lambda a: a["eps"])
        for d in results.defenses:
            xs = [0.0] + [255 * a["eps"] for a in confs]
            ys = [100 * (results.row(d, "clean")["accuracy"] or 0.0)]
            ys += [100 * (results.row(d, a["key"])["accuracy"] or 0.0) for a in confs]
            ax.plot(xs, ys, marker="o", label=d)
        ax.set_title(name)
        ax.set_xlabel("eps (x 1/255)")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
        if idx == 0:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _short(s: str, n: int = 22) -> str:
    s = s.split(",")[0]
    return s if len(s) <= n else s[: n - 1] + "…"


def plot_examples(results: Results, max_defenses: int = 6) -> bytes | None:
    """Grid: one row per example; clean, adversarial, then each defense's purified output."""
    exs = results.examples
    if not exs:
        return None
    defs = [d for d in results.defenses if d in exs[0]["purified"]][:max_defenses]
    ncols = 2 + len(defs)
    fig = _canvas(2.1 * ncols, 2.45 * len(exs))
    for i, ex in enumerate(exs):
        label = ex["label"]
        panels = [
            ("clean", ex["clean"], ex["clean_pred"], ex["clean_pred_name"]),
            ("adversarial", ex["adversarial"], ex["adversarial_pred"], ex["adversarial_pred_name"]),
        ]
        panels += [(d, ex["purified"][d], ex["purified_pred"][d], ex["purified_pred_name"][d]) for d in defs]
        for j, (title, img, pred, pname) in enumerate(panels):
            ax = fig.add_subplot(len(exs), ncols, i * ncols + j + 1)
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            color = "#137333" if pred == label else "#c5221f"
            ax.set_title(f"{_short(title, 16)}\n{_short(pname)}", fontsize=9, color=color)
            if j == 0:
                ax.set_ylabel(f"true: {_short(ex['label_name'])}", fontsize=9)
    fig.tight_layout()
    return _png(fig)
