"""``bpda``: the whole purifier's backward pass is the identity (Athalye et al.'s approximation).

This also catches a differentiable stage whose true gradient is useless (vanishing, shattered).
Where the purifier changes the image size (super-resolution x2), the identity backward is the
bicubic resampling to the output size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...purification.base import Purifier, _StraightThrough
from ...purification.compose import Defended, ResolutionPolicy
from .base import (
    AttackTarget,
    ThreatModel,
    defended,
    defense_fingerprint,
    is_identity,
    register_threat_model,
)


class IdentityBackward(Purifier):
    """The wrapped purifier's exact output; backward as if it were the identity.

    Where the output size differs (super-resolution x2, random resize + pad), the backward pass
    is that of a bilinear resize of the input to the output size.
    """

    reference = "Athalye, Carlini, Wagner, ICML 2018 (BPDA, identity stand-in)"

    def __init__(self, purifier: Purifier) -> None:
        super().__init__()
        self.purifier = purifier
        self.randomized = purifier.randomized
        self.scale = purifier.scale

    def purify(self, x: Tensor) -> Tensor:
        """Exact forward, identity backward."""
        with torch.no_grad():
            y = self.purifier(x)
        if not (torch.is_grad_enabled() and x.requires_grad):
            return y
        s = x
        if tuple(y.shape[-2:]) != tuple(x.shape[-2:]):
            s = nn.functional.interpolate(x, size=tuple(y.shape[-2:]), mode="bilinear", align_corners=False)
        return _StraightThrough.apply(y, s)

    def extra_repr(self) -> str:
        """Shown by ``repr``."""
        return repr(self.purifier)


@register_threat_model
class BPDAIdentity(ThreatModel):
    """Exact forward pass of the defense, identity backward pass; EOT if randomised."""

    name = "bpda"
    description = "exact forward pass, identity backward pass through every purification stage (BPDA)"
    reference = "Athalye, Carlini, Wagner, ICML 2018"

    def target(
        self,
        purifier: Purifier,
        classifier: nn.Module,
        *,
        resolution: ResolutionPolicy = "purified",
        eot_samples: int = 1,
    ) -> AttackTarget:
        """``Defended(BPDA(defense, identity), classifier)``."""
        if is_identity(purifier):
            return AttackTarget(classifier, Defended(purifier, classifier, resolution), {"defense": None})
        attacked = IdentityBackward(purifier)
        module, scorer, n = defended(attacked, classifier, resolution, eot_samples)
        fp = {
            "defense": defense_fingerprint(purifier),
            "gradient": "identity",
            "resolution": resolution,
            "eot": n,
        }
        return AttackTarget(module, scorer, fp, n, attacked)
