"""Tests of the competing input-transformation defenses: reference parity and relationships."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import scipy.ndimage
import scipy.optimize
import torch
from PIL import Image

from srdefense.purification import BPDA, NoGradientError, Purifier, create_defense, list_defenses
from srdefense.purification.jpeg import JPEG, jpeg_compress
from srdefense.purification.quantize import (
    BitDepthReduction,
    FeatureSqueezing,
    MedianSmoothing,
    bit_depth_reduction,
    median_filter,
)
from srdefense.purification.quilting import ImageQuilting, build_patch_database, quilt
from srdefense.purification.randomized import (
    PixelDeflection,
    RandomResizePad,
    pixel_deflection,
    random_resize_pad,
)
from srdefense.purification.tvm import (
    TotalVarianceMinimization,
    total_variation,
    tv_objective,
    tv_reconstruct,
)

NAMES = [
    "jpeg",
    "bit-depth",
    "median",
    "feature-squeezing",
    "tvm",
    "quilting",
    "random-resize-pad",
    "pixel-deflection",
]
RANDOMIZED = ["tvm", "quilting", "random-resize-pad", "pixel-deflection"]


def _has_wavelet() -> bool:
    try:
        import srdefense.purification.wavelet  # noqa: F401
    except ImportError:
        return False
    return True


needs_wavelet = pytest.mark.skipif(not _has_wavelet(), reason="srdefense.purification.wavelet missing")


# ------------------------------------------------------------------------------------------ data


def _photo(i: int, size: int) -> torch.Tensor:
    """A real photo (skimage.data), center-cropped and resized to size x size, float in [0, 1]."""
    import skimage.data

    arr = [skimage.data.astronaut, skimage.data.chelsea, skimage.data.coffee][i]()
    im = Image.fromarray(arr)
    s = min(im.size)
    left, top = (im.size[0] - s) // 2, (im.size[1] - s) // 2
    im = im.crop((left, top, left + s, top + s)).resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.array(im)).permute(2, 0, 1).float().div(255)


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    return torch.stack([_photo(i, 64) for i in range(3)])


@pytest.fixture(scope="module")
def patch_db(photos: torch.Tensor) -> torch.Tensor:
    return build_patch_database(photos, patch_size=5, max_patches=3000, seed=0)


def _make(name: str, patch_db: torch.Tensor, **kw: object) -> Purifier:
    if name == "quilting":
        kw.setdefault("database", patch_db)
    return create_defense(name, **kw)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


# ------------------------------------------------------------------------- contract, registry


def test_registry_metadata() -> None:
    infos = {d.name: d for d in list_defenses()}
    for name in NAMES:
        assert name in infos
        assert infos[name].reference
        assert infos[name].randomized == (name in RANDOMIZED)
    assert infos["quilting"].fast is False
    assert infos["median"].differentiable and infos["random-resize-pad"].differentiable
    for name in NO_GRADIENT:
        assert not infos[name].differentiable


def test_spec_strings_configure() -> None:
    assert create_defense("jpeg:quality=30").quality == 30
    assert create_defense("bit-depth:bits=3").bits == 3
    assert create_defense("median:kernel_size=2").kernel_size == 2
    fs = create_defense("feature-squeezing:bits=4:median_size=none")
    assert (fs.bits, fs.median_size) == (4, None)
    t = create_defense("tvm:keep_prob=0.3:weight=0.05:iterations=20:seed=1")
    assert (t.keep_prob, t.weight, t.iterations) == (0.3, 0.05, 20)
    r = create_defense("random-resize-pad:resize_back=true:mode=bilinear")
    assert r.resize_back and r.mode == "bilinear"
    p = create_defense("pixel-deflection:deflections=50:window=3:denoise=false")
    assert (p.deflections, p.window, p.denoise) == (50, 3, False)
    with pytest.raises(TypeError, match="accepted"):
        create_defense("jpeg:qualiti=30")
    with pytest.raises(ValueError, match="quality"):
        create_defense("jpeg:quality=0")


def test_quilting_needs_database(tmp_path) -> None:
    with pytest.raises(ValueError, match="database"):
        create_defense("quilting")
    with pytest.raises(FileNotFoundError, match="no images"):
        create_defense(f"quilting:database={tmp_path}")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        ImageQuilting(tmp_path / "missing")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch", [0, 1, 2])
def test_contract(name: str, batch: int, photos: torch.Tensor, patch_db: torch.Tensor) -> None:
    d = _make(name, patch_db, seed=0) if name in RANDOMIZED else _make(name, patch_db)
    x = photos[:batch].clone()
    x_before = x.clone()
    y = d(x)
    assert torch.equal(x, x_before), "the input was modified"
    h, w = x.shape[-2:]
    expected = (round(h * 331 / 299), round(w * 331 / 299)) if name == "random-resize-pad" else (h, w)
    assert y.shape == (batch, 3, *expected)
    assert y.dtype == x.dtype
    if batch:
        assert float(y.min()) >= 0 and float(y.max()) <= 1
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_non_contiguous_input(name: str, photos: torch.Tensor, patch_db: torch.Tensor) -> None:
    x = photos[:2]
    xt = x.transpose(-1, -2).contiguous().transpose(-1, -2)
    assert not xt.is_contiguous()
    kw = {"seed": 3} if name in RANDOMIZED else {}
    assert torch.allclose(_make(name, patch_db, **kw)(xt), _make(name, patch_db, **kw)(x), atol=1e-6)


@pytest.mark.parametrize("name", RANDOMIZED)
def test_seed_replays_draw(name: str, photos: torch.Tensor, patch_db: torch.Tensor) -> None:
    x = photos[:2]
    a = _make(name, patch_db, seed=7)(x)
    b = _make(name, patch_db, seed=7)(x)
    c = _make(name, patch_db, seed=8)(x)
    assert torch.equal(a, b)
    assert a.shape != c.shape or not torch.equal(a, c)
    # the generator argument works too, and the module's draws advance between calls
    d = _make(name, patch_db, seed=7)
    first, second = d(x), d(x)
    assert torch.equal(first, a)
    assert first.shape != second.shape or not torch.equal(first, second)


@pytest.mark.parametrize("cls", [TotalVarianceMinimization, PixelDeflection, RandomResizePad])
def test_generator_and_seed_exclusive(cls: type) -> None:
    with pytest.raises(ValueError, match="either"):
        cls(generator=torch.Generator(), seed=1)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    x = torch.rand(1, 3, 20, 20)
    assert torch.equal(cls(generator=g1)(x), cls(generator=g2)(x))


NO_GRADIENT = ["jpeg", "bit-depth", "feature-squeezing", "tvm", "quilting", "pixel-deflection"]


@pytest.mark.parametrize("name", NO_GRADIENT)
def test_no_gradient_raises_and_bpda_identity(
    name: str, photos: torch.Tensor, patch_db: torch.Tensor
) -> None:
    kw = {"seed": 0} if name in RANDOMIZED else {}
    d = _make(name, patch_db, **kw)
    assert not d.differentiable
    x = photos[:2].clone().requires_grad_(True)
    with pytest.raises(NoGradientError):
        d(x).sum().backward()
    x.grad = None
    w = torch.randn_like(x)
    y = BPDA(_make(name, patch_db, **kw))(x)
    assert torch.equal(y.detach(), _make(name, patch_db, **kw)(x.detach()))
    (y * w).sum().backward()
    expected = w if name != "feature-squeezing" else None
    if expected is not None:
        assert torch.allclose(x.grad, expected)
    else:  # stand-in: the 2x2 median alone
        assert x.grad is not None and torch.isfinite(x.grad).all()


# ------------------------------------------------------------------------------------ JPEG


@pytest.mark.parametrize("quality", [75, 30, 95])
def test_jpeg_matches_pillow(quality: int, photos: torch.Tensor) -> None:
    out = jpeg_compress(photos, quality)
    for i in range(photos.shape[0]):
        a = (photos[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="JPEG", quality=quality)
        ref = np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        got = (out[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        assert np.array_equal(got, ref)
    assert torch.equal(JPEG(quality)(photos), out)
    # lower quality loses more
    assert _psnr(jpeg_compress(photos, 10), photos) < _psnr(jpeg_compress(photos, 90), photos)


# ----------------------------------------------------------------------- bit depth, median


@pytest.mark.parametrize("bits", [1, 3, 5, 8])
def test_bit_depth_exact(bits: int, photos: torch.Tensor) -> None:
    x = photos.double()
    levels = 2**bits - 1
    ref = np.rint(x.numpy() * levels) / levels
    y = bit_depth_reduction(x, bits)
    assert np.array_equal(y.numpy(), ref)
    assert len(torch.unique(y)) <= levels + 1
    assert torch.equal(BitDepthReduction(bits)(x), y)
    assert torch.equal(bit_depth_reduction(y, bits), y)  # idempotent


def test_bit_depth_8_is_identity_on_8_bit_images(photos: torch.Tensor) -> None:
    x = (photos * 255).round() / 255
    assert torch.allclose(bit_depth_reduction(x, 8), x, atol=1e-7)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_median_matches_scipy(k: int) -> None:
    g = torch.Generator().manual_seed(k)
    x = torch.rand(2, 3, 13, 17, generator=g, dtype=torch.float64)
    ref = scipy.ndimage.median_filter(x.numpy(), size=(1, 1, k, k), mode="reflect")
    assert np.array_equal(median_filter(x, k).numpy(), ref)
    assert torch.equal(MedianSmoothing(k)(x), median_filter(x, k))


def test_median_gradcheck() -> None:
    x = torch.rand(1, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: median_filter(t, 3), (x,))
    y = MedianSmoothing(3)(x)  # declared differentiable: a true gradient
    # every output selects exactly one input value of its window
    (g,) = torch.autograd.grad(y[0, 0, 2, 2], x)
    assert (g != 0).sum() == 1 and float(g.sum()) == 1.0
    assert g[0, 0, 1:4, 1:4].sum() == 1.0


def test_feature_squeezing_output_is_chain(photos: torch.Tensor) -> None:
    fs = FeatureSqueezing(bits=5, median_size=2)
    assert torch.equal(fs(photos), median_filter(bit_depth_reduction(photos, 5), 2))
    with pytest.raises(ValueError):
        FeatureSqueezing(bits=None, median_size=None)


class _HighFrequencyModel(torch.nn.Module):
    """Toy 2-class model whose confidence grows with high-frequency energy (noise)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = (x[..., 1:] - x[..., :-1]).abs().mean(dim=(1, 2, 3))
        return torch.stack([40 * e - 2, torch.zeros_like(e)], dim=1)


def test_feature_squeezing_detection_score(photos: torch.Tensor) -> None:
    fs = FeatureSqueezing()
    model = _HighFrequencyModel()
    g = torch.Generator().manual_seed(0)
    noisy = (photos + 0.05 * torch.randn(photos.shape, generator=g)).clamp(0, 1)
    clean_score = fs.detection_score(model, photos)
    noisy_score = fs.detection_score(model, noisy)
    assert clean_score.shape == (3,)
    assert ((clean_score >= 0) & (clean_score <= 2)).all() and (noisy_score <= 2).all()
    assert (noisy_score > clean_score).all()
    # a constant image on the 5-bit grid is a fixed point of both squeezers: score 0
    flat = torch.full((2, 3, 16, 16), 10 / 31)
    assert torch.equal(fs.detection_score(model, flat), torch.zeros(2))


# ---------------------------------------------------------------------------------- TVM


def _grad_matrices(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    n = h * w
    dy, dx = np.zeros((n, n)), np.zeros((n, n))
    for i in range(h):
        for j in range(w):
            k = i * w + j
            if i < h - 1:
                dy[k, k], dy[k, k + w] = -1, 1
            if j < w - 1:
                dx[k, k], dx[k, k + 1] = -1, 1
    return dy, dx


def _smoothed_tv_reference(x: np.ndarray, m: np.ndarray, weight: float, eps: float) -> np.ndarray:
    """Direct solve of sum m (z - x)^2 + weight * sum sqrt(dy^2 + dx^2 + eps'^2) by Newton
    (scipy trust-exact, exact Hessian), with continuation eps' = 0.1 ... eps."""
    h, w = x.shape
    dy, dx = _grad_matrices(h, w)
    xv, mv, z = x.ravel(), m.ravel(), x.ravel().copy()
    e = 0.1
    while True:

        def terms(z: np.ndarray, e: float = e) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            gy, gx = dy @ z, dx @ z
            return gy, gx, np.sqrt(gy**2 + gx**2 + e**2)

        def f(z: np.ndarray) -> float:
            return float((mv * (z - xv) ** 2).sum() + weight * terms(z)[2].sum())

        def jac(z: np.ndarray) -> np.ndarray:
            gy, gx, phi = terms(z)
            return 2 * mv * (z - xv) + weight * (dy.T @ (gy / phi) + dx.T @ (gx / phi))

        def hess(z: np.ndarray) -> np.ndarray:
            gy, gx, phi = terms(z)
            a, b, c = 1 / phi - gy**2 / phi**3, -gy * gx / phi**3, 1 / phi - gx**2 / phi**3
            hh = dy.T @ (a[:, None] * dy) + dy.T @ (b[:, None] * dx) + dx.T @ (b[:, None] * dy)
            return np.diag(2 * mv) + weight * (hh + dx.T @ (c[:, None] * dx))

        z = scipy.optimize.minimize(
            f, z, jac=jac, hess=hess, method="trust-exact", options={"gtol": 1e-12, "maxiter": 500}
        ).x
        if e <= eps:
            return z.reshape(h, w)
        e = max(e / 10, eps)


@pytest.mark.parametrize("weight", [0.03, 0.2, 1.0])
def test_tv_reconstruction_matches_direct_solve(weight: float) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 1, 6, 6, generator=g, dtype=torch.float64)
    m = (torch.rand(1, 1, 6, 6, generator=g) < 0.5).double()
    eps = 1e-7
    z_ref = _smoothed_tv_reference(x[0, 0].numpy(), m[0, 0].numpy(), weight, eps)
    z_ref = torch.from_numpy(z_ref)[None, None]
    f_ref = float(tv_objective(z_ref, x, m, weight))
    # F(z_ref) is within weight * eps * 36 (+ solver tolerance) of the true minimum
    z = tv_reconstruct(x, m, weight, iterations=5000)
    f = float(tv_objective(z, x, m, weight))
    assert f <= f_ref + 2e-6
    assert f >= f_ref - weight * eps * 36 - 1e-6
    # the kept values are determined uniquely (strictly convex there)
    assert torch.allclose(z * m, z_ref * m, atol=1e-4)
    # the default number of iterations is close already
    f100 = float(tv_objective(tv_reconstruct(x, m, weight, iterations=100), x, m, weight))
    assert f_ref - 1e-6 <= f100 <= f_ref * 1.002


@pytest.mark.parametrize("shape", [(2, 3, 17, 23), (1, 3, 1, 9), (1, 3, 9, 1), (1, 1, 2, 2), (2, 3, 2, 5)])
def test_tv_solver_without_gradient_equals_the_differentiable_one(shape: tuple[int, ...]) -> None:
    """The in-place solver (no gradient) runs the same iterations as the autograd one."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    m = (torch.rand(shape, generator=g) < 0.5).double()
    with torch.no_grad():
        fast = tv_reconstruct(x, m, 0.03, iterations=60)
    graph = tv_reconstruct(x.clone().requires_grad_(True), m, 0.03, iterations=60)
    assert graph.requires_grad and not fast.requires_grad
    torch.testing.assert_close(fast, graph.detach(), rtol=0, atol=1e-12)
    # and the iterations did something (not the hole-filled start), where there is room to
    if shape[-1] * shape[-2] > 4:
        assert (fast - tv_reconstruct(x, m, 0.03, iterations=0)).abs().max() > 1e-3


def test_tv_limits() -> None:
    x = torch.rand(2, 3, 9, 9, dtype=torch.float64)
    ones = torch.ones_like(x)
    # all kept and weight 0: the image itself; tiny weight: almost the image
    assert torch.equal(tv_reconstruct(x, ones, 0.0), x)
    assert torch.allclose(tv_reconstruct(x, ones, 1e-4, iterations=300), x, atol=1e-3)
    # huge weight with all values kept: the (clipped) mean of each channel, a constant image
    z = tv_reconstruct(x, ones, 100.0, iterations=3000)
    assert torch.allclose(z, x.mean(dim=(2, 3), keepdim=True).expand_as(x), atol=1e-3)
    assert float(total_variation(z).max()) < 1e-2


def test_tvm_defaults_and_mask(photos: torch.Tensor) -> None:
    d = TotalVarianceMinimization(seed=0)
    assert (d.keep_prob, d.weight, d.iterations) == (0.5, 0.03, 100)
    m = d.draw_mask(torch.zeros(4, 3, 64, 64))
    assert set(torch.unique(m).tolist()) <= {0.0, 1.0}
    assert abs(float(m.mean()) - 0.5) < 0.01


def test_tvm_unrolled_gradient() -> None:
    x = torch.rand(1, 3, 5, 5, dtype=torch.float64, requires_grad=True)

    def f(t: torch.Tensor) -> torch.Tensor:
        return TotalVarianceMinimization(weight=0.1, iterations=10, unroll=True, seed=0)(t * 0.8 + 0.1)

    assert torch.autograd.gradcheck(f, (x,))


# ------------------------------------------------------------------------ PSNR relationships


@pytest.fixture(scope="module")
def noisy_photos() -> tuple[torch.Tensor, torch.Tensor]:
    clean = torch.stack([_photo(i, 224) for i in range(3)])
    g = torch.Generator().manual_seed(0)
    return clean, (clean + 0.05 * torch.randn(clean.shape, generator=g)).clamp(0, 1)


@pytest.mark.parametrize("spec", ["jpeg", "median", "tvm:keep_prob=1", "pixel-deflection"])
def test_purification_raises_psnr_of_noisy_photos(
    spec: str, noisy_photos: tuple[torch.Tensor, torch.Tensor]
) -> None:
    if spec == "pixel-deflection" and not _has_wavelet():
        pytest.skip("srdefense.purification.wavelet missing")
    clean, noisy = noisy_photos
    kw = {"seed": 0} if spec.split(":")[0] in RANDOMIZED else {}
    out = create_defense(spec, **kw)(noisy)
    for i in range(3):
        assert _psnr(out[i], clean[i]) > _psnr(noisy[i], clean[i]) + 0.5


def test_tvm_default_keeps_photos_recognisable(noisy_photos: tuple[torch.Tensor, torch.Tensor]) -> None:
    # half of the values dropped: the reconstruction stays close to the photo (PSNR > 27 dB)
    clean, _ = noisy_photos
    out = create_defense("tvm", seed=0)(clean)
    assert all(_psnr(out[i], clean[i]) > 27 for i in range(3))
    # and stronger TV smooths more (lower total variation)
    strong = create_defense("tvm:weight=0.3", seed=0)(clean)
    assert (total_variation(strong) < total_variation(out)).all()


# -------------------------------------------------------------------------- randomized


def test_random_resize_pad_draws() -> None:
    x = torch.rand(1, 3, 299, 299) * 0.4  # no value equals the pad value 0.5
    sizes = set()
    for seed in range(12):
        y = RandomResizePad(seed=seed)(x)
        assert y.shape == (1, 3, 331, 331)
        pad = (y[0, 0] == 0.5).sum().item()
        rnd = math.isqrt(331 * 331 - pad)
        assert rnd * rnd == 331 * 331 - pad and 310 <= rnd < 331
        sizes.add(rnd)
        # the non-padded block is the nearest-neighbour resize of the input
        rows = (y[0, 0] != 0.5).any(dim=1).nonzero().flatten()
        cols = (y[0, 0] != 0.5).any(dim=0).nonzero().flatten()
        block = y[..., rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        assert torch.equal(block, torch.nn.functional.interpolate(x, size=(rnd, rnd), mode="nearest"))
    assert len(sizes) > 3
    # 224 inputs scale proportionally; resize_back restores the size
    assert RandomResizePad(seed=0)(torch.rand(2, 3, 224, 224)).shape == (2, 3, 248, 248)
    assert RandomResizePad(seed=0, resize_back=True)(torch.rand(2, 3, 224, 224)).shape == (2, 3, 224, 224)
    assert RandomResizePad().output_size(299, 299) == (331, 331)


def test_random_resize_pad_gradient() -> None:
    x = torch.rand(2, 3, 12, 10, dtype=torch.float64, requires_grad=True)

    def f(t: torch.Tensor) -> torch.Tensor:
        return random_resize_pad(t, mode="bilinear", generator=torch.Generator().manual_seed(3))

    assert torch.autograd.gradcheck(f, (x,))
    d = RandomResizePad(seed=0)
    d(x).sum().backward()  # declared differentiable
    s = d.bpda_surrogate(x.detach())
    assert s.shape == d(x.detach()).shape


def test_pixel_deflection_step() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 40, 30, generator=g)
    y = pixel_deflection(x, deflections=60, window=2, generator=torch.Generator().manual_seed(1))
    changed = (y != x).nonzero()
    assert 0 < len(changed) <= 2 * 60
    for n, c, r, col in changed.tolist():
        win = x[n, c, max(0, r - 2) : r + 3, max(0, col - 2) : col + 3]
        assert (win == y[n, c, r, col]).any()
    assert torch.equal(pixel_deflection(x, 0, 5), x)
    pd = PixelDeflection(deflections=60, window=2, denoise=False, seed=1)
    assert torch.equal(pd(x), y)


@needs_wavelet
def test_pixel_deflection_uses_reference_denoiser() -> None:
    from srdefense.purification.wavelet import denoise_wavelet

    x = _photo(0, 64)[None]
    d = PixelDeflection(seed=4)
    deflected = pixel_deflection(x, 200, 10, generator=torch.Generator().manual_seed(4))
    ref = denoise_wavelet(
        deflected,
        sigma=0.04,
        wavelet="db1",
        mode="soft",
        convert2ycbcr=True,
        method="BayesShrink",
        legacy_sigma=True,
    ).clamp(0, 1)
    assert torch.allclose(d(x), ref)


# ------------------------------------------------------------------------------- quilting


def test_quilting_reproduces_image_from_its_own_patches() -> None:
    x = _photo(1, 24)[None]
    db = build_patch_database(x, patch_size=5, max_patches=10**6)
    assert db.shape == (20 * 20, 75)
    y = quilt(x, db, patch_size=5, overlap=2, k=1)
    assert torch.allclose(y, x, atol=1e-6)
    # sizes not on the grid are covered too
    x2 = x[..., :23, :21]
    assert torch.allclose(quilt(x2, db, 5, 2, 1), x2, atol=1e-6)


def test_quilting_uses_only_database_content(photos: torch.Tensor, patch_db: torch.Tensor) -> None:
    # with no overlap every output patch is a database patch
    x = photos[:1, :, :20, :20]
    y = quilt(x, patch_db, patch_size=5, overlap=0, k=3, generator=torch.Generator().manual_seed(0))
    blocks = torch.nn.functional.unfold(y, 5, stride=5)[0].T  # (16, 75)
    exact = "donot_use_mm_for_euclid_dist"
    d = torch.cdist(blocks, patch_db, compute_mode=exact).min(dim=1).values
    assert float(d.max()) < 1e-5
    # k nearest: the chosen patch is among the 3 nearest of the query patch
    q = torch.nn.functional.unfold(x, 5, stride=5)[0].T
    top3 = torch.cdist(q, patch_db, compute_mode=exact).topk(3, largest=False).indices
    chosen = torch.cdist(blocks, patch_db, compute_mode=exact).argmin(dim=1)
    assert (top3 == chosen[:, None]).any(dim=1).all()


def test_quilting_database_from_folder(tmp_path, photos: torch.Tensor) -> None:
    for i in range(2):
        a = (photos[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(a).save(tmp_path / f"img{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    q = create_defense(f"quilting:database={tmp_path}:max_patches=500:seed=0")
    assert q.database.shape == (500, 75)
    x = photos[2:3]
    assert q(x).shape == x.shape
    db2 = build_patch_database(tmp_path, 5, 500, seed=0)
    assert torch.equal(db2, q.database)
