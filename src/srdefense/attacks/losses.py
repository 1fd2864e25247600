"""The per-sample losses every attack of this package optimises: cross-entropy, margin, DLR.

All functions map logits ``(N, K)`` and integer classes ``(N,)`` to one value per sample
``(N,)``, so a row's loss never depends on the other rows of the batch (attacks sum it before
differentiating, which keeps each row's gradient its own).

- :func:`cross_entropy`: ``-log softmax(z)_y`` (FGSM, I-FGSM, MI-FGSM, PGD, APGD-CE).
- :func:`margin`: ``z_y - max_{i != y} z_i``, positive exactly when ``y`` wins (Carlini & Wagner's
  ``f``, Square's loss, and the "is it still robust" test).
- :func:`dlr`: the Difference of Logits Ratio of Croce & Hein (ICML 2020),
  ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)`` with ``z_pi1 >= z_pi2 >= ...`` the sorted
  logits: invariant to shifting and to positive scaling of the logits, so a classifier cannot
  hide behind large or flat logits.
- :func:`dlr_targeted`: ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``.

:func:`objective` names the quantity an attack *maximises* for a loss name, untargeted or
targeted, so that the gradient family, APGD and Square share one definition.

These few lines are written here rather than taken from a library: torchattacks and
AutoAttack define them inside each attack class (with batch-mean reductions and in-place
edits of the logits), and the project needs one per-sample definition shared by all attacks.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

LOSSES: tuple[str, ...] = ("ce", "dlr", "margin")

_DLR_EPS = 1e-12  # keeps the denominator away from zero for flat logits (as the reference)


def _check(logits: Tensor, labels: Tensor, least_classes: int, what: str) -> None:
    if logits.ndim != 2:
        raise ValueError(f"logits: expected shape (N, K), got {tuple(logits.shape)}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"labels: expected shape ({logits.shape[0]},), got {tuple(labels.shape)}")
    if logits.shape[1] < least_classes:
        raise ValueError(f"{what}: needs at least {least_classes} classes, got {logits.shape[1]}")


def _true_logit(logits: Tensor, labels: Tensor) -> Tensor:
    return logits.gather(1, labels[:, None]).squeeze(1)


def _best_other(logits: Tensor, labels: Tensor) -> Tensor:
    return logits.scatter(1, labels[:, None], -math.inf).amax(1)


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-sample cross-entropy ``-log softmax(logits)_labels``.

    Args:
        logits: (N, K).
        labels: (N,) integer classes.

    Returns:
        (N,) losses.
    """
    _check(logits, labels, 1, "cross_entropy")
    return F.cross_entropy(logits, labels, reduction="none")


def margin(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-sample logit margin ``z_y - max_{i != y} z_i`` (positive iff ``y`` has the top logit).

    Carlini & Wagner's untargeted ``f`` is ``max(margin(z, y), -kappa)``; their targeted ``f`` is
    ``max(-margin(z, t), -kappa)``.

    Args:
        logits: (N, K), K >= 2.
        labels: (N,) integer classes.

    Returns:
        (N,) margins.
    """
    _check(logits, labels, 2, "margin")
    return _true_logit(logits, labels) - _best_other(logits, labels)


def dlr(logits: Tensor, labels: Tensor) -> Tensor:
    """Untargeted Difference of Logits Ratio (Croce & Hein, ICML 2020, eq. 6), to be maximised.

    ``DLR(z, y) = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)``, where ``z_pi1 >= z_pi2
    >= z_pi3`` are the three largest logits. Positive exactly when the sample is misclassified.

    Args:
        logits: (N, K), K >= 3.
        labels: (N,) integer classes.

    Returns:
        (N,) values.
    """
    _check(logits, labels, 3, "dlr")
    top = logits.topk(3, dim=1).values
    return -margin(logits, labels) / (top[:, 0] - top[:, 2] + _DLR_EPS)


def dlr_targeted(logits: Tensor, labels: Tensor, targets: Tensor) -> Tensor:
    """Targeted DLR (Croce & Hein, ICML 2020, eq. 7), to be maximised.

    ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)``.

    Args:
        logits: (N, K), K >= 4.
        labels: (N,) true classes.
        targets: (N,) target classes.

    Returns:
        (N,) values.
    """
    _check(logits, labels, 4, "dlr_targeted")
    if targets.shape != labels.shape:
        raise ValueError(f"targets: expected shape {tuple(labels.shape)}, got {tuple(targets.shape)}")
    top = logits.topk(4, dim=1).values
    num = _true_logit(logits, labels) - _true_logit(logits, targets)
    return -num / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _DLR_EPS)


def objective(name: str, logits: Tensor, labels: Tensor, targets: Tensor | None = None) -> Tensor:
    """The per-sample quantity an attack maximises for the loss ``name``.

    ============  =======================  ==============================
    name          untargeted               targeted (towards ``t``)
    ============  =======================  ==============================
    ``"ce"``      ``CE(z, y)``             ``-CE(z, t)``
    ``"dlr"``     ``DLR(z, y)``            ``DLR_t(z, y, t)``
    ``"margin"``  ``-margin(z, y)``        ``margin(z, t)``
    ============  =======================  ==============================

    Args:
        name: one of :data:`LOSSES`.
        logits: (N, K).
        labels: (N,) true classes.
        targets: (N,) target classes, or ``None`` for the untargeted objective.

    Returns:
        (N,) values; larger is better for the attacker.

    Raises:
        ValueError: unknown loss name.
    """
    if name == "ce":
        return cross_entropy(logits, labels) if targets is None else -cross_entropy(logits, targets)
    if name == "dlr":
        return dlr(logits, labels) if targets is None else dlr_targeted(logits, labels, targets)
    if name == "margin":
        return -margin(logits, labels) if targets is None else margin(logits, targets)
    raise ValueError(f"loss: expected one of {', '.join(LOSSES)}, got {name!r}")


def fooled(logits: Tensor, labels: Tensor, targets: Tensor | None = None) -> Tensor:
    """Whether each sample is adversarial: misclassified, or (targeted) classified as its target.

    Args:
        logits: (N, K).
        labels: (N,) true classes.
        targets: (N,) target classes, or ``None``.

    Returns:
        (N,) bool.
    """
    pred = logits.argmax(1)
    return pred != labels if targets is None else pred == targets


__all__ = ["LOSSES", "cross_entropy", "dlr", "dlr_targeted", "fooled", "margin", "objective"]
