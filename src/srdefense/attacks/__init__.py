"""Adversarial attacks: the gradient family (FGSM, I-FGSM, MI-FGSM, PGD), DeepFool, C&W L2.

Every attack is configured once and called as ``attack(model, images, labels, *,
generator=None)`` for any ``nn.Module`` returning logits; images are floats in [0, 1], NCHW.
"""

from .base import EOT, Attack, choose_targets, clip_perturbation, l2_norms, linf_norms
from .cw import CarliniWagnerL2
from .deepfool import DeepFool, L2DeepFool, LinfDeepFool
from .gradient import (
    BIM,
    FGSM,
    IFGSM,
    L2PGD,
    MIFGSM,
    PGD,
    GradientAttack,
    L2GradientAttack,
    LinfGradientAttack,
    LinfPGD,
)
from .registry import ATTACKS, create_attack, list_attacks

__all__ = [
    "ATTACKS",
    "BIM",
    "EOT",
    "FGSM",
    "IFGSM",
    "MIFGSM",
    "PGD",
    "Attack",
    "CarliniWagnerL2",
    "DeepFool",
    "GradientAttack",
    "L2DeepFool",
    "L2GradientAttack",
    "L2PGD",
    "LinfDeepFool",
    "LinfGradientAttack",
    "LinfPGD",
    "choose_targets",
    "clip_perturbation",
    "create_attack",
    "l2_norms",
    "linf_norms",
    "list_attacks",
]
