"""Fast paths and reduced precision of super-resolution: exactness, fidelity, the auto policy,
the CLI option, and the bounded-memory gradient (checkpointing + tiling)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from typer.testing import CliRunner

import srdefense
import srdefense.purification.precision as precision_mod
import srdefense.purification.sr_models.upconv7 as upconv7_mod
import srdefense.purification.superres as superres_mod
from srdefense.purification import (
    SuperResolve,
    create_sr_model,
    paper_defense,
    precision_fidelity,
    resolve_precision,
    set_precision,
)
from srdefense.purification.superres import tiled_forward


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Four embedded photos at 64 x 64 (the first four by file name)."""
    from srdefense.data.samples import SamplesNotFoundError, embedded_samples

    try:
        samples = embedded_samples()[:4]
    except SamplesNotFoundError as exc:
        pytest.skip(str(exc))
    ims = [Image.open(p).convert("RGB").resize((64, 64), Image.BICUBIC) for p, _ in samples]
    return torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255 for im in ims])


# ----------------------------------------------------------------------------- fp32 fast path


def test_fused_fp32_path_equals_plain_path(monkeypatch):
    net = create_sr_model("upconv7")
    x = torch.rand(2, 3, 23, 31, generator=torch.Generator().manual_seed(0))
    assert upconv7_mod._fused_dtype(net, x) is None  # grad enabled, weights require grad
    with torch.no_grad():
        assert upconv7_mod._fused_dtype(net, x) == (torch.float32 if upconv7_mod._HAS_FUSED else None)
        fast = net(x)
        monkeypatch.setattr(upconv7_mod, "_HAS_FUSED", False)
        plain = net(x)
    assert fast.shape == plain.shape == (2, 3, 46, 62)
    assert (fast - plain).abs().max() <= 1e-5
    # the reference in float64
    with torch.no_grad():
        ref = create_sr_model("upconv7").double()(x.double())
    assert (fast.double() - ref).abs().max() <= 1e-5


@pytest.mark.parametrize("padding", ["replicate", "zeros"])
@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (2, 3, 5, 9), (1, 3, 17, 8)])
def test_fused_path_pads_and_shuffles_like_the_plain_path(monkeypatch, padding, shape):
    """The NHWC pad and the one-copy pixel shuffle of the inference path equal F.pad + PixelShuffle."""
    net = create_sr_model("upconv7", padding=padding)
    bgr = create_sr_model("upconv7", padding=padding, channel_order="bgr")
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        fast, fast_bgr = net(x), bgr(x)
        monkeypatch.setattr(upconv7_mod, "_HAS_FUSED", False)
        plain, plain_bgr = net(x), bgr(x)
        ref = create_sr_model("upconv7", padding=padding).double()(x.double())
    assert fast.shape == (shape[0], 3, 2 * shape[2], 2 * shape[3]) and fast.is_contiguous()
    assert (fast - plain).abs().max() <= 1e-5 and (fast_bgr - plain_bgr).abs().max() <= 1e-5
    assert (fast.double() - ref).abs().max() <= 1e-5
    xp = net._pad_nhwc(x, torch.float64)  # the padding alone is exact
    mode = "replicate" if padding == "replicate" else "constant"
    assert torch.equal(xp, F.pad(x.double(), (7, 7, 7, 7), mode=mode))


def test_fused_weights_follow_parameter_changes():
    net = create_sr_model("upconv7")
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = net(x)
        net.upconv.bias.add_(0.25)  # in-place change: the cached fused weights must be rebuilt
        after = net(x)
    assert (after - before - 0.25).abs().max() <= 1e-5


def test_raw_bf16_autocast_takes_the_plain_path_without_onednn_bf16(monkeypatch):
    """A user's own ``torch.autocast(bf16)`` on a CPU whose oneDNN has no bf16 kernels (AVX2
    only) must not reach the fused oneDNN call (it raises there): the plain path runs instead."""
    net = create_sr_model("upconv7")
    x = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(2))
    monkeypatch.setattr(upconv7_mod, "bf16_conv_kernels", lambda: False)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert upconv7_mod._fused_dtype(net, x) is None
    monkeypatch.setattr(upconv7_mod, "bf16_conv_kernels", lambda: True)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert upconv7_mod._fused_dtype(net, x) == (torch.bfloat16 if upconv7_mod._HAS_FUSED else None)
    monkeypatch.undo()
    with torch.no_grad():
        ref = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # on this CPU, whichever path it has
            low = net(x).float()
    assert low.shape == ref.shape and (low - ref).abs().max() <= 0.1


def test_default_precision_is_fp32_and_exact():
    x = torch.rand(2, 3, 16, 20, generator=torch.Generator().manual_seed(2))
    sr = SuperResolve("upconv7")
    assert sr.precision == "fp32" and paper_defense()[1].precision == "fp32"
    with torch.no_grad():
        y = sr(x)
        ref = sr.net(x).clamp(0, 1)
    assert y.dtype == torch.float32
    assert torch.equal(y, ref)


# ----------------------------------------------------------------------------- bf16 fidelity


def test_bf16_stays_within_fidelity_bounds_on_photos(photos):
    clf = srdefense.create_classifier("efficientnet_lite0")
    f = precision_fidelity(paper_defense(), photos, clf, precision="bf16")
    assert f.dtype == "bfloat16" and f.n == 4
    # measured on the 20 embedded photos at 224 (benchmarks/bench_precision.py): about 52 dB
    assert f.psnr_db >= 42 and f.psnr_min_db >= 40, f
    assert 0 < f.max_abs_diff <= 0.05, f
    assert f.top1_agreement is not None and f.top1_agreement >= 0.75, f
    # fp32 against fp32 is exact: the comparison itself is sensitive
    same = precision_fidelity(paper_defense(), photos[:2], precision="fp32")
    assert same.psnr_db == float("inf") and same.max_abs_diff == 0


def test_bf16_output_is_float32_in_range_and_input_untouched(photos):
    x = photos[:2].clone()
    y = paper_defense(precision="bf16")(x)
    assert torch.equal(x, photos[:2])
    assert y.dtype == torch.float32 and y.shape == (2, 3, 128, 128)
    assert y.min() >= 0 and y.max() <= 1


def test_bf16_gradient_is_float32_and_close_to_fp32(photos):
    x = photos[:1]
    grads = {}
    for p in ("fp32", "bf16"):
        xi = x.clone().requires_grad_(True)
        (paper_defense(precision=p)(xi) * torch.linspace(0, 1, 128)).sum().backward()
        grads[p] = xi.grad
    assert grads["bf16"].dtype == torch.float32
    cos = F.cosine_similarity(grads["fp32"].flatten(), grads["bf16"].flatten(), dim=0)
    assert cos > 0.98, cos


def test_set_precision_reaches_every_sr_stage():
    d = srdefense.create_defense("paper-faithful")
    assert set_precision(d, "bf16") is d
    stages = [m for m in d.modules() if isinstance(m, SuperResolve)]
    assert stages and all(m.precision == "bf16" for m in stages)
    with pytest.raises(ValueError, match="precision: expected one of fp32, bf16, fp16, auto"):
        set_precision(d, "int8")
    with pytest.raises(ValueError, match="precision"):
        SuperResolve("upconv7", precision="half")


def test_precision_is_a_plain_parameter_of_the_defense_builders():
    for name in ("paper", "paper-faithful", "sr"):
        d = srdefense.create_defense(f"{name}:precision=bf16")
        assert {m.precision for m in d.modules() if isinstance(m, SuperResolve)} == {"bf16"}


# ----------------------------------------------------------------------------- auto policy


def test_auto_follows_the_hardware_and_never_applies_to_gradients(monkeypatch):
    monkeypatch.setattr(precision_mod, "bf16_is_fast", lambda device: True)
    assert resolve_precision("auto", "cpu") == torch.bfloat16
    assert resolve_precision("auto", "cpu", needs_grad=True) == torch.float32
    assert resolve_precision("bf16", "cpu", needs_grad=True) == torch.bfloat16  # asked for: honoured
    monkeypatch.setattr(precision_mod, "bf16_is_fast", lambda device: False)
    assert resolve_precision("auto", "cpu") == torch.float32
    assert resolve_precision("fp16", "cpu") == torch.float16


def test_auto_gradient_pass_is_exactly_fp32(monkeypatch):
    monkeypatch.setattr(precision_mod, "bf16_is_fast", lambda device: True)
    x = torch.rand(1, 3, 14, 12, generator=torch.Generator().manual_seed(3))
    grads = []
    for p in ("fp32", "auto"):
        xi = x.clone().requires_grad_(True)
        SuperResolve("upconv7", precision=p)(xi).square().sum().backward()
        grads.append(xi.grad)
    assert torch.equal(grads[0], grads[1])
    with torch.no_grad():  # and the inference pass does switch to bf16
        assert not torch.equal(SuperResolve("upconv7", precision="auto")(x), SuperResolve("upconv7")(x))


def test_bf16_hardware_report_matches_cpu_flags():
    hw = precision_mod.cpu_bf16_hardware()
    assert set(hw) == {"avx512_bf16", "amx", "onednn_bf16"}
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else None
    if flags is not None:
        assert hw["avx512_bf16"] == ("avx512_bf16" in flags)
        assert hw["amx"] == ("amx_tile" in flags)


# ----------------------------------------------------------------------------- CLI


def test_cli_purify_and_classify_take_precision(photos, tmp_path):
    from srdefense.cli.main import _load_commands, app

    _load_commands()
    runner = CliRunner()
    src = tmp_path / "photo.png"
    srdefense.write_png(src, photos[0])
    outs = {}
    for p in ("fp32", "bf16"):
        args = ["purify", str(src), "--out", str(tmp_path / p), "--quiet", "--precision", p]
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
        outs[p] = srdefense.read_image(tmp_path / p / "photo.png")
    diff = (outs["fp32"] - outs["bf16"]).abs()
    assert 0 < diff.max() <= 0.05
    res = runner.invoke(app, ["purify", str(src), "--out", str(tmp_path / "x"), "--precision", "fp8"])
    assert res.exit_code == 2 and "--precision: expected one of fp32, bf16, fp16, auto" in res.output
    res = runner.invoke(app, ["classify", str(src), "--defense", "jpeg", "--precision", "bf16"])
    assert res.exit_code == 2 and "no super-resolution stage" in res.output
    res = runner.invoke(app, ["classify", str(src), "--defense", "paper", "--precision", "bf16", "--json"])
    assert res.exit_code == 0, res.output
    assert '"predictions"' in res.output


# ----------------------------------------------------------------------------- bounded gradient


def _grad(sr: SuperResolve, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    xi = x.clone().requires_grad_(True)
    (sr(xi) * weight).sum().backward()
    return xi.grad


def test_checkpointed_tiled_gradient_equals_plain_gradient_float64():
    net = create_sr_model("upconv7").double()
    x = 0.1 + 0.8 * torch.rand(2, 3, 21, 18, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    w = torch.rand(2, 3, 42, 36, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    plain = _grad(SuperResolve(net, grad_checkpoint=False), x, w)
    ckpt = _grad(SuperResolve(net, grad_checkpoint=True), x, w)
    tiled = _grad(SuperResolve(net, tile_size=8, grad_checkpoint=True), x, w)
    assert (ckpt - plain).abs().max() <= 1e-12
    assert (tiled - plain).abs().max() <= 1e-12
    assert plain.abs().max() > 1e-3


def _saved_bytes(sr: SuperResolve, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    """Bytes of the distinct storages the backward graph of ``sr(x)`` keeps, and the gradient."""
    total = 0
    seen: set[int] = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        if t.untyped_storage().data_ptr() not in seen:
            seen.add(t.untyped_storage().data_ptr())
            total += t.untyped_storage().nbytes()
        return t

    xi = x.clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = sr(xi)
    y.square().sum().backward()
    return total, xi.grad


def test_auto_checkpoint_bounds_saved_activations(monkeypatch):
    """Above the budget, the backward graph keeps only the pieces' inputs, not activations."""
    x = torch.rand(3, 3, 20, 20, generator=torch.Generator().manual_seed(6))
    monkeypatch.setattr(superres_mod, "GRAD_KEEP_BYTES", 1000)  # less than one piece's activations
    monkeypatch.setattr(superres_mod, "CPU_CHUNK_PIXELS", 400)  # one image per piece
    big, g_plain = _saved_bytes(SuperResolve("upconv7", grad_checkpoint=False), x)
    small, g_auto = _saved_bytes(SuperResolve("upconv7"), x)
    # float32 through different (but both exact) groupings of the same sums
    assert (g_auto - g_plain).abs().max() <= 1e-5 * g_plain.abs().max()
    assert small * 20 < big, (small, big)
    monkeypatch.setattr(superres_mod, "GRAD_KEEP_BYTES", 10**12)  # within it: no recompute
    kept, _ = _saved_bytes(SuperResolve("upconv7"), x)
    assert kept == big


class _Counting(nn.Module):
    """An SR network that counts the images of its forward passes (recomputed ones included)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = create_sr_model("upconv7")
        self.halo = self.net.halo
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += x.shape[0]
        return self.net(x)


def test_auto_checkpoint_keeps_what_fits_the_budget_and_recomputes_only_the_rest(monkeypatch):
    x = torch.rand(5, 3, 20, 20, generator=torch.Generator().manual_seed(9))
    monkeypatch.setattr(superres_mod, "CPU_CHUNK_PIXELS", 400)  # one image per piece
    counting = _Counting()
    sr = SuperResolve(counting)
    plain, g_plain = _saved_bytes(SuperResolve(counting, grad_checkpoint=False), x)
    one, _ = _saved_bytes(SuperResolve(counting, grad_checkpoint=False), x[:1])
    per_image = (plain - one) / 4  # the weights are kept once, whatever the batch
    # the probe measures the kept bytes per input pixel on zero images of the same size
    probe = sr._kept_bytes_per_pixel(x) * 400
    assert 0.9 * per_image <= probe <= 1.1 * per_image, (probe, per_image)
    for budget_images in (1, 2, 4):
        monkeypatch.setattr(superres_mod, "GRAD_KEEP_BYTES", int(probe * budget_images) + 1)
        counting.images = 0
        saved, g = _saved_bytes(sr, x)
        # kept images run once; the others once more in the backward pass
        assert counting.images == 5 + (5 - budget_images), budget_images
        # the kept images' activations and the weights (the others keep only their input)
        expected = one + (budget_images - 1) * per_image
        assert 0.95 * expected <= saved <= expected + 0.5 * per_image, (budget_images, saved, expected)
        assert (g - g_plain).abs().max() <= 1e-5 * g_plain.abs().max()


def test_auto_checkpoint_tiles_an_image_above_the_budget(monkeypatch):
    # Winograd off: its 2x2 tile grid starts anew in each image tile, so tiled and untiled
    # round differently, and a LeakyReLU input within rounding of 0 takes the other branch;
    # this test is about what is kept and recomputed, which it checks to float rounding
    monkeypatch.setattr(upconv7_mod, "USE_WINOGRAD", False)
    x = torch.rand(1, 3, 40, 36, generator=torch.Generator().manual_seed(10))
    counting = _Counting()
    sr = SuperResolve(counting)
    monkeypatch.setattr(superres_mod, "GRAD_TILE_SIZE", 16)  # 3 x 3 tiles
    monkeypatch.setattr(superres_mod, "GRAD_KEEP_BYTES", int(sr._kept_bytes_per_pixel(x) * 40 * 36 / 2))
    _, g_plain = _saved_bytes(SuperResolve(counting, grad_checkpoint=False), x)
    counting.images = 0
    _, g = _saved_bytes(sr, x)
    assert 9 + 1 <= counting.images < 9 + 9  # 9 tiles; some (not all, not none) recomputed
    assert (g - g_plain).abs().max() <= 1e-5 * g_plain.abs().max()


def test_tiled_forward_checkpoint_matches_without():
    net = create_sr_model("upconv7").double()
    x = torch.rand(1, 3, 19, 17, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    with torch.no_grad():
        a = tiled_forward(net, x, 2, 9, 7, checkpoint=True)
        b = tiled_forward(net, x, 2, None, 7)
    assert (a - b).abs().max() <= 1e-12


def test_fp16_runs_and_stays_close_to_fp32():
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        ref = SuperResolve("upconv7")(x)
        half = SuperResolve("upconv7", precision="fp16")(x)
    assert half.dtype == torch.float32
    assert 0 < (half - ref).abs().max() <= 0.02  # fp16 keeps 11 significant bits


def test_memory_probe_leaves_the_network_as_it_was():
    net = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.BatchNorm2d(12), nn.PixelShuffle(2))
    net.train()
    net[0].eval()  # a mixed state, restored as it was
    sr = SuperResolve(net, scale=2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.rand(2, 3, 24, 24, requires_grad=True)
    per_pixel = sr._kept_bytes_per_pixel(x)
    assert per_pixel > 0
    assert [m.training for m in net.modules()] == [True, False, True, True]
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
