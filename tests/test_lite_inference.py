"""EfficientNet-Lite's folded inference form equals the package's own forward.

float64 for exactness (fold, padding and skip logic; odd sizes take the asymmetric padding of
stride-2 layers), float32 for the fused oneDNN path, gradients to the input and to the weights,
training mode, and the cache of folded weights following parameter changes.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from srdefense.models import create_classifier
from srdefense.models import lite_inference as li


@pytest.fixture(scope="module")
def clf():
    return create_classifier("efficientnet_lite0")


def _inputs(*shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
    x = torch.rand(*shape, dtype=dtype, generator=torch.Generator().manual_seed(0))
    return 2 * x - 1  # the network's normalised range


def test_lite0_takes_the_folded_form(clf):
    net = clf.model
    assert li.supports(net) and hasattr(net, "reference_forward")
    assert type(net).__mro__[1].__name__ == "EfficientNet"  # the module tree stays the package's
    assert list(net.state_dict()) == list(type(net).__mro__[1].state_dict(net))


@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (2, 3, 97, 131), (1, 3, 33, 32)])
def test_float64_equals_the_package_forward(clf, shape):
    net = create_classifier("efficientnet_lite0").model.double()
    x = _inputs(*shape, dtype=torch.float64)
    with torch.no_grad():
        got, ref = net(x), net.reference_forward(x)
    assert got.shape == ref.shape == (shape[0], 1000)
    assert (got - ref).abs().max() < 1e-10
    # input gradient
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    (ga,) = torch.autograd.grad((net(xa) * ref).sum(), xa)
    (gb,) = torch.autograd.grad((net.reference_forward(xb) * ref).sum(), xb)
    assert (ga - gb).abs().max() < 1e-10 * max(1.0, gb.abs().max().item())
    # weight gradients reach the original parameters (the fold is in the graph)
    net.zero_grad()
    net(x).square().sum().backward()
    g1 = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    net.reference_forward(x).square().sum().backward()
    g2 = [p.grad for p in net.parameters()]
    assert all(g is not None for g in g1)
    rel = [(a - b).abs().max().item() / max(1.0, b.abs().max().item()) for a, b in zip(g1, g2, strict=True)]
    assert max(rel) < 1e-9


def test_float32_fused_path_equals_the_package_forward(clf):
    net = clf.model
    x = _inputs(3, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        got, ref = net(x), net.reference_forward(x)
        ref64 = create_classifier("efficientnet_lite0").model.double().reference_forward(x.double())
    assert (got - ref).abs().max() < 1e-4
    # as close to the float64 truth as the package's own float32 forward, within rounding
    assert (got.double() - ref64).abs().max() < 1e-4
    assert got.argmax(1).tolist() == ref.argmax(1).tolist()


def test_training_mode_runs_the_package_forward():
    net = create_classifier("efficientnet_lite0").model.double().train()
    x = _inputs(2, 3, 40, 40, dtype=torch.float64)
    torch.manual_seed(0)
    a = net(x)
    torch.manual_seed(0)
    b = net.reference_forward(x)
    assert torch.equal(a, b)


def test_folded_weights_follow_parameter_changes():
    net = create_classifier("efficientnet_lite0").model.double()
    x = _inputs(1, 3, 48, 48, dtype=torch.float64)
    with torch.no_grad():
        before = net(x)
        net._bn1.bias.add_(0.5)  # the head's batch norm, in place: the cached fold must be rebuilt
        after, ref = net(x), net.reference_forward(x)
    assert (after - before).abs().max() > 1e-3
    assert (after - ref).abs().max() < 1e-10
