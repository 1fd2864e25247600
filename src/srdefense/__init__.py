"""srdefense: super-resolution input purification against adversarial examples.

Mustafa et al., "Image Super-Resolution as a Defense Against Adversarial Attacks",
IEEE TIP 2020, with honest gray-box and white-box evaluation.
"""

from .purification import (
    BPDA,
    Compose,
    Defended,
    Identity,
    NoGradientError,
    Purifier,
    ResizeBack,
    create_defense,
    list_defenses,
)

__version__ = "0.1.0"

__all__ = [
    "BPDA",
    "Compose",
    "Defended",
    "Identity",
    "NoGradientError",
    "Purifier",
    "ResizeBack",
    "__version__",
    "create_defense",
    "list_defenses",
]
