"""One way to say a thing: resizing back, random draws, the resolution policy's names."""

from __future__ import annotations

import pytest
import torch

from srdefense import _random
from srdefense.attacks import base as attack_base
from srdefense.data.transforms import resize_to
from srdefense.evaluation.config import ConfigError, EvalConfig
from srdefense.purification import Defended, ResizeBack, create_defense, paper_defense
from srdefense.purification.compose import resolution_policy
from srdefense.purification.randomized import RandomResizePad


def test_resize_to_is_antialiased_bilinear_clipped_and_handles_empty_batches():
    x = torch.rand(2, 3, 16, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = resize_to(x, (8, 6))
    ref = torch.nn.functional.interpolate(x, size=(8, 6), mode="bilinear", antialias=True)
    torch.testing.assert_close(y, ref.clamp(0, 1))
    # a weighted average: a constant image stays that constant
    flat = resize_to(torch.full((1, 3, 9, 7), 0.25), (4, 3))
    torch.testing.assert_close(flat, torch.full((1, 3, 4, 3), 0.25))
    assert resize_to(x[:0], (5, 7)).shape == (0, 3, 5, 7)
    assert resize_to(torch.full((1, 3, 4, 4), 2.0), (2, 2)).max() == 1.0


def test_every_resize_back_is_resize_to():
    x = torch.rand(1, 3, 20, 24, dtype=torch.float64)
    torch.testing.assert_close(ResizeBack(2)(x), resize_to(x, (10, 12)))

    class Double(torch.nn.Module):
        def forward(self, z):
            return z

    nearest2x = create_defense("nearest")
    d = Defended(nearest2x, Double(), resolution="native")
    small = torch.rand(1, 3, 10, 12, dtype=torch.float64)
    torch.testing.assert_close(d(small), resize_to(nearest2x(small), (10, 12)))
    rrp = RandomResizePad(seed=0, resize_back=True)
    assert rrp(small.float()).shape == small.shape


def test_random_draws_come_from_one_module():
    assert attack_base.rand is _random.rand_like and attack_base.randn is _random.randn_like
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    like = torch.zeros(1, dtype=torch.float64)
    ref = torch.rand(4, generator=g2, dtype=torch.float64)
    torch.testing.assert_close(_random.rand_like((4,), like, g1), ref)
    k = _random.randint(2, 5, (1000,), torch.Generator().manual_seed(1), torch.device("cpu"))
    assert k.dtype == torch.int64 and k.min() == 2 and k.max() == 4
    with pytest.raises(ValueError, match="either generator or seed"):
        _random.make_generator(torch.Generator(), 3)


def test_resolution_policy_has_one_vocabulary_and_accepts_the_old_name():
    assert resolution_policy("purified") == resolution_policy("2x") == "purified"
    assert resolution_policy("native") == "native"
    with pytest.raises(ValueError, match="'purified' \\(alias '2x'\\) or 'native'"):
        resolution_policy("4x")
    x = torch.rand(1, 3, 12, 12)
    old = create_defense("nearest:resolution=2x")
    new = create_defense("nearest:resolution=purified")
    assert repr(old) == repr(new) and old(x).shape == new(x).shape == (1, 3, 24, 24)
    assert create_defense("nearest:resolution=native")(x).shape == (1, 3, 12, 12)
    assert repr(paper_defense(resolution="2x", sr_model="nearest")) == repr(paper_defense(sr_model="nearest"))
    assert Defended(new, torch.nn.Identity(), resolution="2x").resolution == "purified"
    assert EvalConfig(resolution="2x").validate().resolution == "purified"
    with pytest.raises(ConfigError, match="resolution"):
        EvalConfig(resolution="4x").validate()
