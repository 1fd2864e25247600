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
from torch import Tensor, nn

from .io import atomic_write_bytes, atomic_write_json

THUMBNAIL = 192
"""Longest side of the example thumbnails, in pixels."""


def thumbnail(image: Tensor, size: int = THUMBNAIL) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (h, w, 3) uint8 with the longest side at most ``size``."""
    x = image.detach().float().cpu().clamp(0, 1).unsqueeze(0)
    h, w = x.shape[-2:]
    s = min(1.0, size / max(h, w))
    if s < 1.0:
        x = nn.functional.interpolate(
            x, size=(max(1, round(h * s)), max(1, round(w * s))), mode="bilinear", antialias=True
        ).clamp(0, 1)
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
