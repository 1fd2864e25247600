"""Tests of the sanity checks on a classifier (`evaluation/checks.py`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

import _eval_helpers
from _eval_helpers import CountingFGSM, TinyNet
from srdefense.evaluation import evaluate
from srdefense.evaluation.checks import check_classifier
from srdefense.purification import Identity

# the shared module-scoped fixtures (pytest finds them by name in this module)
_one_thread = _eval_helpers._one_thread
model = _eval_helpers.model
data = _eval_helpers.data


# ---------------------------------------------------------------------------- sanity checks
def test_sanity_checks_flag_softmax_randomness_and_zero_gradients(model: nn.Module, data: Any) -> None:
    x, y = data[0][:4], data[1][:4]
    assert check_classifier(model, x, y) == []
    soft = nn.Sequential(model, nn.Softmax(dim=1)).eval()
    assert [w["check"] for w in check_classifier(soft, x, y)] == ["softmax"]

    class Random(nn.Module):
        def forward(self, t: Tensor) -> Tensor:
            return model(t) + torch.randn(t.shape[0], 4)

    assert "randomized" in [w["check"] for w in check_classifier(Random(), x, y)]

    class Flat(nn.Module):
        def forward(self, t: Tensor) -> Tensor:
            return model(t).detach() + 0 * t.mean((1, 2, 3))[:, None]

    assert "zero-gradient" in [w["check"] for w in check_classifier(Flat(), x, y)]
    train = TinyNet().train()
    assert "train-mode" in [w["check"] for w in check_classifier(train, x, y)]
    res = evaluate(soft, {"none": Identity()}, [CountingFGSM(4 / 255)], data, batch_size=7)
    assert "softmax" in [w["check"] for w in res.warnings]
