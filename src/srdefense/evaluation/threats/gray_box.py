"""``gray-box``: the attacker knows the classifier, not the defense (Mustafa et al.'s setting)."""

from __future__ import annotations

from torch import nn

from ...purification.base import Purifier
from ...purification.compose import Defended, ResolutionPolicy
from .base import AttackTarget, ThreatModel, register_threat_model


@register_threat_model
class GrayBox(ThreatModel):
    """Adversarial examples are crafted on the classifier alone, then purified and classified."""

    name = "gray-box"
    description = "attacks see the classifier alone; the defense is applied afterwards (the paper's setting)"
    reference = "Mustafa et al., IEEE TIP 2020"
    adaptive = False

    def target(
        self,
        purifier: Purifier,
        classifier: nn.Module,
        *,
        resolution: ResolutionPolicy = "purified",
        eot_samples: int = 1,
    ) -> AttackTarget:
        """The classifier alone; the scorer is the defended model."""
        return AttackTarget(
            module=classifier,
            scorer=Defended(purifier, classifier, resolution),
            fingerprint={"defense": None},
        )
