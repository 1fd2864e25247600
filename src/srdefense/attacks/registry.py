"""The attack registry: names for the API, the command line and the evaluation harness.

An attack is one class plus one registration: ``@register_attack`` on the class, which reads
its ``name``, ``reference`` and the first line of its docstring. The package imports every
attack module, so every attack is registered once :mod:`srdefense.attacks` is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from .._registry import Registry
from .base import Attack

__all__ = ["ATTACKS", "AttackInfo", "create_attack", "list_attacks", "register_attack"]

A = TypeVar("A", bound=type[Attack])


@dataclass(frozen=True)
class AttackInfo:
    """Metadata of a registered attack.

    Attributes:
        name: registry name.
        cls: the attack class.
        description: one line for ``srdefense list attacks`` (the class docstring's first line).
        reference: the paper it comes from.
    """

    name: str
    cls: type[Attack]
    description: str
    reference: str

    @property
    def capabilities(self) -> dict[str, Any]:
        """What the default configuration does: its norm, default eps, targeted variant."""
        a = cast(Callable[[], Attack], self.cls)()  # every registered attack has defaults for all arguments
        return {
            "norm": a.distance,
            "default_eps": a.eps,
            "minimal_norm": a.eps is None,
            "targeted": self.cls.supports_targets,
        }


ATTACKS: Registry[AttackInfo] = Registry("attack")


def register_attack(cls: A) -> A:
    """Class decorator registering an :class:`~srdefense.attacks.Attack` under ``cls.name``.

    Example:
        >>> @register_attack  # doctest: +SKIP
        ... class MyAttack(LinfGradientAttack):
        ...     '''One line for the listing.'''
        ...     name = "my-attack"
    """
    doc = (cls.__doc__ or "").strip().splitlines()
    ATTACKS.add(
        cls.name,
        AttackInfo(name=cls.name, cls=cls, description=doc[0] if doc else "", reference=cls.reference),
    )
    return cls


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
    cls = ATTACKS.get(name).cls
    if eps is not None:
        kwargs["eps"] = eps
    return cls(**kwargs)


def list_attacks() -> list[AttackInfo]:
    """All registered attacks, sorted by name."""
    return [ATTACKS.get(n) for n in ATTACKS.names()]
