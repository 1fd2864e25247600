"""Adversarial attacks: gradient family, DeepFool, C&W L2, APGD, Square and AutoAttack.

The gradient family is FGSM, I-FGSM, MI-FGSM and PGD; APGD comes with the CE, DLR and targeted
DLR losses; every attack takes its loss from :mod:`.losses`.

Every attack is configured once and called as ``attack(model, images, labels, *,
generator=None)`` for any ``nn.Module`` returning logits; images are floats in [0, 1], NCHW.
"""

from .apgd import APGD, APGDCE, APGDDLR, APGDT, APGDRun
from .autoattack import AutoAttack, AutoAttackRand, EnsembleResult
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
from .registry import ATTACKS, AttackInfo, create_attack, list_attacks, register_attack
from .square import Square

__all__ = [
    "APGD",
    "APGDCE",
    "APGDDLR",
    "APGDT",
    "ATTACKS",
    "BIM",
    "EOT",
    "FGSM",
    "IFGSM",
    "MIFGSM",
    "PGD",
    "APGDRun",
    "Attack",
    "AttackInfo",
    "AutoAttack",
    "AutoAttackRand",
    "CarliniWagnerL2",
    "DeepFool",
    "EnsembleResult",
    "GradientAttack",
    "L2DeepFool",
    "L2GradientAttack",
    "L2PGD",
    "LinfDeepFool",
    "LinfGradientAttack",
    "LinfPGD",
    "Square",
    "choose_targets",
    "clip_perturbation",
    "create_attack",
    "l2_norms",
    "linf_norms",
    "list_attacks",
    "register_attack",
]
