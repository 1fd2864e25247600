"""Threat models: what the attacker differentiates, one file per setting, one registration each.

A threat model turns ``(defense, classifier)`` into an :class:`AttackTarget`: the
``nn.Module`` the attack is run on, the module that scores the result (forward-identical, so
attack and score never drift apart), and a fingerprint for the adversarial-example cache.

- ``gray-box`` (:mod:`.gray_box`): the classifier alone (the paper's setting);
- ``white-box`` (:mod:`.white_box`): the whole defended model with true gradients, the declared
  BPDA stand-in only for a stage without one, EOT for a randomised defense;
- ``bpda`` (:mod:`.bpda`): every purification stage's backward pass is the identity (Athalye et
  al.'s standard approximation), EOT for a randomised defense.

A new threat model is one module here that subclasses :class:`ThreatModel` and registers it
with :func:`register_threat_model`, plus its import below.
"""

from . import bpda, gray_box, white_box  # noqa: E402,F401,I001 - registration
from .base import (
    AttackTarget,
    ThreatModel,
    ThreatModelInfo,
    create_threat_model,
    defense_fingerprint,
    is_identity,
    list_threat_models,
    register_threat_model,
    state_dict_sha256,
    threat_model_names,
    with_stand_ins,
)

__all__ = [
    "AttackTarget",
    "ThreatModel",
    "ThreatModelInfo",
    "create_threat_model",
    "defense_fingerprint",
    "is_identity",
    "list_threat_models",
    "register_threat_model",
    "state_dict_sha256",
    "threat_model_names",
    "with_stand_ins",
]
