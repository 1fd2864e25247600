"""Sanity checks of the classifier, in the spirit of AutoAttack's ``checks.py``.

Each check returns warnings (dicts with ``check`` and ``message``) that are stored in the
results; nothing is printed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def check_classifier(model: nn.Module, images: Tensor, labels: Tensor) -> list[dict[str, str]]:
    """Run the classifier checks on one batch.

    - outputs that look like probabilities (non-negative rows summing to 1) instead of logits:
      attacks built on logit margins (C&W, DeepFool) and cross-entropy lose their meaning;
    - a randomised model (two forward passes differ): single-draw accuracies overstate
      robustness, EOT is needed;
    - zero input gradients for some images: gradient masking, gradient attacks fail silently;
    - non-finite outputs;
    - the model left in training mode.

    Args:
        model: the classifier (its mode is not changed).
        images: (N, 3, H, W) in [0, 1].
        labels: (N,) true classes.

    Returns:
        A list of warnings.
    """
    out: list[dict[str, str]] = []
    if model.training:
        out.append(
            {
                "check": "train-mode",
                "message": "the classifier is in training mode (batch norm and dropout act per batch); "
                "call .eval() first",
            }
        )
    if images.shape[0] == 0:
        return out
    with torch.no_grad():
        a = model(images)
        b = model(images)
    if not torch.isfinite(a).all():
        out.append({"check": "finite", "message": "the classifier returns NaN or infinite outputs"})
        return out
    if a.ndim == 2 and a.shape[1] > 1:
        rows = a.double().sum(1)
        if (a >= 0).all() and torch.allclose(rows, torch.ones_like(rows), atol=1e-5):
            out.append(
                {
                    "check": "softmax",
                    "message": "the classifier outputs look like probabilities (rows sum to 1), not logits; "
                    "attacks expect logits",
                }
            )
    if not torch.equal(a, b):
        diff = (a - b).abs().max().item()
        out.append(
            {
                "check": "randomized",
                "message": f"two forward passes of the classifier differ (max |diff| {diff:.3g}): it is "
                "randomised; single-draw accuracy overstates robustness, evaluate with EOT",
            }
        )
    x = images.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, labels.to(logits.device).long(), reduction="sum")
        try:
            (grad,) = torch.autograd.grad(loss, x)
        except RuntimeError as exc:
            out.append({"check": "gradient", "message": f"no gradient through the classifier: {exc}"})
            return out
    zero = int((grad.flatten(1).abs().sum(1) == 0).sum())
    if zero:
        out.append(
            {
                "check": "zero-gradient",
                "message": f"the input gradient of the classifier is zero for {zero}/{images.shape[0]} "
                "images: gradient masking; gradient attacks may fail silently",
            }
        )
    return out
