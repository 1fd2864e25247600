"""srdefense: super-resolution input purification against adversarial examples.

Mustafa et al., "Image Super-Resolution as a Defense Against Adversarial Attacks",
IEEE TIP 2020, with honest gray-box and white-box evaluation.

Example:
    >>> import srdefense
    >>> classifier = srdefense.create_classifier("efficientnet_lite0")
    >>> model = srdefense.Defended(srdefense.paper_defense(), classifier)
"""

from ._registry import RegistryInfo
from ._spec import parse_spec
from ._weights import weights_fingerprint
from .data import load_dataset, read_image, write_png
from .models import (
    ClassifierCfg,
    create_classifier,
    get_classifier_cfg,
    imagenet_classes,
    list_classifiers,
    wrap_classifier,
)
from .predict import Classification, ClassifyFailure, ClassifyResult, Prediction, classify
from .purification import (
    BPDA,
    Compose,
    Defended,
    Identity,
    NoGradientError,
    Purifier,
    ResizeBack,
    SuperResolve,
    WaveletDenoise,
    create_defense,
    denoise_wavelet,
    list_defenses,
    list_sr_models,
    paper_defense,
    precision_fidelity,
    set_precision,
    super_resolve,
)

__version__ = "0.1.0"

__all__ = [
    "BPDA",
    "Classification",
    "ClassifyFailure",
    "ClassifyResult",
    "ClassifierCfg",
    "Compose",
    "Defended",
    "Identity",
    "NoGradientError",
    "Prediction",
    "Purifier",
    "RegistryInfo",
    "ResizeBack",
    "SuperResolve",
    "WaveletDenoise",
    "__version__",
    "classify",
    "create_classifier",
    "create_defense",
    "denoise_wavelet",
    "get_classifier_cfg",
    "imagenet_classes",
    "list_classifiers",
    "list_defenses",
    "list_sr_models",
    "load_dataset",
    "paper_defense",
    "parse_spec",
    "precision_fidelity",
    "read_image",
    "set_precision",
    "super_resolve",
    "weights_fingerprint",
    "wrap_classifier",
    "write_png",
]
