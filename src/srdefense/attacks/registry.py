"""The attack registry: names for the API, the command line and the evaluation harness."""

from __future__ import annotations

from typing import Any

from .._registry import Registry
from .apgd import APGDCE, APGDDLR, APGDT
from .autoattack import AutoAttack, AutoAttackRand
from .base import Attack
from .cw import CarliniWagnerL2
from .deepfool import L2DeepFool, LinfDeepFool
from .gradient import FGSM, IFGSM, L2PGD, MIFGSM, PGD
from .square import Square

ATTACKS: Registry[type[Attack]] = Registry("attack")
for _cls in (FGSM, IFGSM, MIFGSM, PGD, L2PGD, LinfDeepFool, L2DeepFool, CarliniWagnerL2):
    ATTACKS.add(_cls.name, _cls)
for _cls in (APGDCE, APGDDLR, APGDT, Square, AutoAttack, AutoAttackRand):
    ATTACKS.add(_cls.name, _cls)


def create_attack(name: str, *, eps: float | None = None, **kwargs: Any) -> Attack:
    """Create a registered attack.

    Args:
        name: registry name (see :func:`list_attacks`).
        eps: perturbation bound in image units; ``None`` keeps the attack's default (4/255
            for the Linf gradient attacks, 3.0 for ``pgd-l2``, unbounded for the minimal-norm
            attacks ``deepfool``, ``deepfool-l2`` and ``cw``; 4/255, or 3.0 with ``norm="l2"``,
            for ``apgd-ce``, ``apgd-dlr``, ``apgd-t``, ``square``, ``autoattack`` and
            ``autoattack-rand``).
        **kwargs: further keyword-only hyperparameters of the attack class.

    Raises:
        KeyError: unknown name (the message lists the known names).
        TypeError: unknown hyperparameter.

    Example:
        >>> attack = create_attack("pgd", eps=8 / 255, steps=20)
    """
    cls = ATTACKS.get(name)
    if eps is not None:
        kwargs["eps"] = eps
    return cls(**kwargs)


def list_attacks() -> list[str]:
    """Sorted names of the registered attacks."""
    return ATTACKS.names()
