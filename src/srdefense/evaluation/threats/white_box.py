"""``white-box``: gradients through the whole defended model, stand-ins only where a stage has none."""

from __future__ import annotations

from torch import nn

from ...purification.base import Purifier
from ...purification.compose import Defended, ResolutionPolicy
from .base import (
    AttackTarget,
    ThreatModel,
    defended,
    defense_fingerprint,
    is_identity,
    register_threat_model,
    with_stand_ins,
)


@register_threat_model
class WhiteBox(ThreatModel):
    """``Defended(defense, classifier)`` with true gradients; BPDA per stage without one; EOT if random."""

    name = "white-box"
    description = (
        "attacks differentiate the whole defended model: true gradients where a stage has one, its "
        "declared BPDA stand-in where it has none, EOT over a randomised defense"
    )
    reference = "Athalye, Carlini, Wagner, ICML 2018"

    def target(
        self,
        purifier: Purifier,
        classifier: nn.Module,
        *,
        resolution: ResolutionPolicy = "purified",
        eot_samples: int = 1,
    ) -> AttackTarget:
        """The defended model with stand-ins for the stages that have no gradient."""
        if is_identity(purifier):
            return AttackTarget(classifier, Defended(purifier, classifier, resolution), {"defense": None})
        attacked = with_stand_ins(purifier)
        module, scorer, n = defended(attacked, classifier, resolution, eot_samples)
        stand_ins = [type(m.purifier).__name__ for m in attacked.modules() if type(m).__name__ == "BPDA"]
        fp = {
            "defense": defense_fingerprint(purifier),
            "gradient": "true" if not stand_ins else "bpda:" + ",".join(stand_ins),
            "resolution": resolution,
            "eot": n,
        }
        return AttackTarget(module, scorer, fp, n, attacked)
