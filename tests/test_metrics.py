"""Tests of the statistics and image metrics (`evaluation/stats.py`, `evaluation/metrics.py`)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from srdefense.evaluation import psnr, ssim, wilson_interval


def test_wilson_interval_hand_computed_reference() -> None:
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4)
    assert hi == pytest.approx(0.9433, abs=1e-4)
    # 1/2: centre (0.5 + 1.9208/2) / 1.9208 ... symmetric around 0.5
    lo, hi = wilson_interval(1, 2)
    assert lo + hi == pytest.approx(1.0)
    assert lo == pytest.approx(0.0945, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def _test_images() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(3)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 24), torch.linspace(0, 1, 29), indexing="ij")
    smooth = torch.stack([xx, yy, (xx + yy) / 2])
    checker = ((torch.arange(24)[:, None] // 4 + torch.arange(29)[None] // 4) % 2).float().expand(3, -1, -1)
    noise = torch.rand(3, 24, 29, generator=g)
    x = torch.stack([smooth, checker, noise])
    y = (x + 0.08 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    y[1] = nn.functional.avg_pool2d(x[1:2], 3, 1, 1)[0]
    return x, y


def test_ssim_and_psnr_match_skimage() -> None:
    skm = pytest.importorskip("skimage.metrics")
    x, y = _test_images()
    ours_s = ssim(x, y)
    ours_p = psnr(y, x)
    for i in range(x.shape[0]):
        a = x[i].permute(1, 2, 0).double().numpy()
        b = y[i].permute(1, 2, 0).double().numpy()
        ref = skm.structural_similarity(
            a, b, channel_axis=2, data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert float(ours_s[i]) == pytest.approx(ref, abs=1e-6)
        assert float(ours_p[i]) == pytest.approx(skm.peak_signal_noise_ratio(a, b, data_range=1), abs=1e-6)


def test_ssim_identity_and_small_images() -> None:
    x, _ = _test_images()
    assert torch.allclose(ssim(x, x), torch.ones(3, dtype=torch.float64))
    assert torch.isfinite(psnr(x, x)).all()
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))


def test_ssim_in_plane_chunks_equals_all_planes_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from srdefense.evaluation import metrics

    x, y = _test_images()
    x, y = torch.cat([x, y.flip(0)]), torch.cat([y, x])  # 6 images, 18 planes
    whole = ssim(x, y)
    monkeypatch.setattr(metrics, "_SSIM_CHUNK_PIXELS", 2 * 24 * 29)  # 2 planes per chunk
    chunked = ssim(x, y)
    monkeypatch.setattr(metrics, "_SSIM_CHUNK_PIXELS", 1)  # 1 plane per chunk
    single = ssim(x, y)
    assert torch.allclose(chunked, whole, rtol=0, atol=1e-14)
    assert torch.allclose(single, whole, rtol=0, atol=1e-14)
    assert whole.shape == (6,) and bool((whole < 1).all())
