"""Classifiers: a registry of pretrained ImageNet models, adapters, and ImageNet labels.

Every classifier takes float images in [0, 1], NCHW, normalises them inside, returns logits,
is in eval mode, and exposes its metadata as ``.cfg`` (a :class:`ClassifierCfg`).
"""

from . import efficientnet_lite as _efficientnet_lite  # noqa: F401  (registers the entries)
from .adapters import MissingDependencyError, timm_classifier, torchvision_classifier, user_classifier
from .imagenet import imagenet_classes, imagenet_wnids, wnid_to_index
from .normalize import Normalize, NormalizedClassifier, normalize
from .registry import (
    CLASSIFIERS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClassifierCfg,
    ClassifierEntry,
    ClassifierLoadError,
    create_classifier,
    get_classifier_cfg,
    list_classifiers,
    register_classifier,
    wrap_classifier,
)

DEFAULT_CLASSIFIER = "efficientnet_lite0"

__all__ = [
    "CLASSIFIERS",
    "DEFAULT_CLASSIFIER",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ClassifierCfg",
    "ClassifierEntry",
    "ClassifierLoadError",
    "MissingDependencyError",
    "Normalize",
    "NormalizedClassifier",
    "create_classifier",
    "get_classifier_cfg",
    "imagenet_classes",
    "imagenet_wnids",
    "list_classifiers",
    "normalize",
    "register_classifier",
    "timm_classifier",
    "torchvision_classifier",
    "user_classifier",
    "wnid_to_index",
    "wrap_classifier",
]
