"""spandrel backend: checkpoints in the key layouts spandrel detects, built from random weights.

Each network is instantiated from spandrel's own architecture code with random weights, its
state dict saved (safetensors or a torch file) and loaded back through the backend; the tests
check the detected architecture, shape and range, parity with the module it came from, the
gradient contract and tiling. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("spandrel") is None,
    reason='spandrel not installed (pip install --no-deps "spandrel==0.4.2" einops)',
)

from srdefense._weights import WeightsError  # noqa: E402
from srdefense.purification import SuperResolve, create_defense  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _arch(name: str):
    from srdefense.purification.sr_models.spandrel_backend import import_spandrel

    import_spandrel()  # spandrel's own modules can be imported only after this (no torchvision)
    return importlib.import_module(f"spandrel.architectures.{name}")


def _build(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "esrgan":
        return _arch("ESRGAN").ESRGAN(num_filters=8, num_blocks=1, scale=4)
    if kind == "compact":
        return _arch("Compact").Compact(num_feat=8, num_conv=3, upscale=2)
    if kind == "dncnn":
        return _arch("DnCNN").DnCNN(in_nc=3, out_nc=3, nc=8, nb=8, act_mode="R")
    if kind == "dncnn_gray":
        return _arch("DnCNN").DnCNN(in_nc=1, out_nc=1, nc=8, nb=8, act_mode="R")
    if kind == "fdncnn":
        return _arch("DnCNN").DnCNN(in_nc=4, out_nc=3, nc=8, nb=8, act_mode="R", mode="FDnCNN")
    if kind == "drunet":
        return _arch("DRUNet").DRUNet(in_nc=4, out_nc=3, nc=[8, 16, 32, 64], nb=2)
    if kind == "scunet":
        return _arch("SCUNet").SCUNet(in_nc=3, config=[1] * 7, dim=64)
    if kind == "fbcnn":  # the QF predictor's Linear(512, 512) fixes the last width
        return _arch("FBCNN").FBCNN(in_nc=3, out_nc=3, nc=[8, 16, 32, 512], nb=2)
    if kind == "swinir":
        return _arch("SwinIR").SwinIR(
            upscale=2,
            img_size=16,
            window_size=4,
            embed_dim=12,
            depths=[1],
            num_heads=[2],
            mlp_ratio=2,
            upsampler="pixelshuffledirect",
        )
    raise ValueError(kind)


def _save(net: torch.nn.Module, path: Path) -> Path:
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(sd, str(path))
    else:
        torch.save({"params_ema": sd}, str(path))  # BasicSR layout
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("spandrel")
    cache: dict[str, tuple[Path, torch.nn.Module]] = {}

    def get(kind: str, ext: str = ".safetensors") -> tuple[Path, torch.nn.Module]:
        key = kind + ext
        if key not in cache:
            net = _build(kind).eval()
            cache[key] = (_save(net, root / f"{kind}{ext}"), net)
        return cache[key]

    return get


# (kind, spandrel id, purpose, scale)
SR_CASES = [("esrgan", "ESRGAN", 4), ("compact", "Compact", 2), ("swinir", "SwinIR", 2)]
DENOISE_CASES = [
    ("dncnn", "DnCNN"),
    ("fdncnn", "DnCNN"),
    ("drunet", "DRUNet"),
    ("scunet", "SCUNet"),
    ("fbcnn", "FBCNN"),
]


@pytest.mark.parametrize(("kind", "arch", "scale"), SR_CASES)
def test_sr_checkpoint_detected_shape_range(ckpt, kind, arch, scale):
    path, _ = ckpt(kind)
    sr = SuperResolve("spandrel", weights=path)
    assert sr.net.arch == arch and sr.net.purpose == "SR"
    assert sr.scale == scale  # from spandrel's descriptor, not the default 2
    x = torch.rand(2, 3, 17, 20)
    y = sr(x)
    assert y.shape == (2, 3, scale * 17, scale * 20)
    assert float(y.detach().min()) >= 0 and float(y.detach().max()) <= 1


@pytest.mark.parametrize(("kind", "arch"), DENOISE_CASES)
def test_denoiser_checkpoint_detected_shape_range(ckpt, kind, arch):
    from srdefense.purification.learned_denoise import LearnedDenoise

    path, _ = ckpt(kind)
    d = LearnedDenoise(path)
    assert d.net.arch == arch and d.net.purpose == "Restoration" and d.net.scale == 1
    x = torch.rand(2, 3, 19, 21)  # not a multiple of 8: DRUNet pads and crops back
    y = d(x)
    assert y.shape == x.shape
    assert float(y.detach().min()) >= 0 and float(y.detach().max()) <= 1


@pytest.mark.parametrize("kind", ["esrgan", "compact", "dncnn", "fdncnn", "drunet"])
def test_output_equals_the_saved_module(ckpt, kind):
    """The weights round-trip: the backend computes what the module it was saved from computes."""
    from srdefense.purification.sr_models.spandrel_backend import load_spandrel

    path, ref = ckpt(kind)
    net = load_spandrel(path).double()
    ref = ref.double()
    x = torch.rand(2, 3, 16, 24, dtype=torch.float64)  # multiple of 8: no padding for DRUNet
    with torch.no_grad():
        if kind in ("fdncnn", "drunet"):  # noise-level map, one per image of the batch
            want = ref(torch.cat([x, torch.full((2, 1, 16, 24), 15 / 255, dtype=x.dtype)], dim=1))
        else:
            want = ref(x)
        got = net(x)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_batch_one_matches_spandrels_own_call(ckpt):
    """spandrel's descriptor (inference mode, clamped) gives our clamped output."""
    from srdefense.purification.sr_models.spandrel_backend import import_spandrel, load_spandrel

    path, _ = ckpt("drunet")
    spandrel = import_spandrel()
    from safetensors.torch import load_file

    desc = spandrel.ModelLoader().load_from_state_dict(load_file(str(path)))
    x = torch.rand(1, 3, 19, 21)
    ours = load_spandrel(path)(x).clamp(0, 1)
    torch.testing.assert_close(ours, desc(x), rtol=1e-5, atol=1e-5)  # same float32 ops, same order


def test_grayscale_network_applied_per_channel(ckpt):
    from srdefense.purification.sr_models.spandrel_backend import load_spandrel

    path, ref = ckpt("dncnn_gray")
    net = load_spandrel(path).double()
    assert net.input_channels == 1
    x = torch.rand(2, 3, 10, 12, dtype=torch.float64)
    with torch.no_grad():
        got = net(x)
        want = torch.cat([ref.double()(x[:, c : c + 1]) for c in range(3)], dim=1)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["compact", "dncnn", "drunet"])
def test_gradient_is_the_true_gradient(ckpt, kind):
    """gradcheck in float64: these networks are differentiable and the backend keeps it so."""
    from srdefense.purification.sr_models.spandrel_backend import load_spandrel

    path, _ = ckpt(kind)
    net = load_spandrel(path).double()
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(net, (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_purifiers_declare_and_have_a_gradient(ckpt):
    path_sr, _ = ckpt("esrgan")
    path_dn, _ = ckpt("dncnn")
    d = create_defense(
        f"paper:sr_model=spandrel:sr_weights={path_sr}:denoiser=spandrel:denoiser_weights={path_dn}"
    )
    assert d.differentiable
    x = torch.rand(1, 3, 12, 12, requires_grad=True)
    d(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0


@pytest.mark.parametrize(("kind", "scale"), [("esrgan", 4), ("compact", 2), ("dncnn", 1)])
def test_tiling_equals_untiled_for_convolutional_networks(ckpt, kind, scale):
    """Exact in float64 (float rounding only): the halo covers the receptive field."""
    from srdefense.purification.sr_models.spandrel_backend import load_spandrel
    from srdefense.purification.superres import tiled_forward

    path, _ = ckpt(kind)
    net = load_spandrel(path).double()
    assert net.exact_tiling and net.halo > 0
    x = torch.rand(2, 3, 29, 23, dtype=torch.float64)
    with torch.no_grad():
        whole = net(x)
        tiled = tiled_forward(net, x, scale, 8, net.halo)
        short = tiled_forward(net, x, scale, 8, 1)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-10)
    assert float((short - whole).abs().max()) > 1e-6  # a too small overlap is visible: the check can fail


def test_non_local_networks_say_tiling_is_approximate(ckpt):
    from srdefense.purification.learned_denoise import LearnedDenoise

    path, _ = ckpt("drunet")
    d = LearnedDenoise(path, tile_size=16)
    assert d.net.exact_tiling is False
    assert d(torch.rand(1, 3, 40, 36)).shape == (1, 3, 40, 36)


def test_torch_file_is_loaded_with_weights_only(ckpt, tmp_path):
    from srdefense.purification.sr_models.spandrel_backend import load_spandrel

    path, ref = ckpt("compact", ".pth")
    net = load_spandrel(path)
    assert net.arch == "Compact"
    bad = tmp_path / "evil.pth"
    torch.save({"params": {"x": torch.zeros(1)}, "obj": Path("/")}, str(bad))  # a pickled object
    with pytest.raises(WeightsError, match="safely"):
        load_spandrel(bad)


def test_sha256_is_checked(ckpt):
    from srdefense.purification.sr_models.spandrel_backend import load_spandrel

    path, _ = ckpt("compact")
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        load_spandrel(path, sha256="0" * 64)
    assert len(load_spandrel(path).sha256) == 64


def test_wrong_purpose_and_unknown_layout_are_refused(ckpt, tmp_path):
    from srdefense.purification.learned_denoise import LearnedDenoise

    dn, _ = ckpt("dncnn")
    sr, _ = ckpt("compact")
    with pytest.raises(WeightsError, match="--denoiser spandrel"):
        SuperResolve("spandrel", weights=dn)
    with pytest.raises(WeightsError, match="--sr spandrel"):
        LearnedDenoise(sr)
    junk = tmp_path / "junk.safetensors"
    save_file({"foo.weight": torch.zeros(3, 3)}, str(junk))
    with pytest.raises(WeightsError, match="does not recognise"):
        SuperResolve("spandrel", weights=junk)
    with pytest.raises(WeightsError, match="needs weights"):
        SuperResolve("spandrel")
    with pytest.raises(ValueError, match="needs weights"):
        create_defense("paper:denoiser=spandrel")
    with pytest.raises(ValueError, match="runs no learned denoiser"):
        create_defense(f"paper:denoiser_weights={dn}")


def test_imports_without_torchvision():
    """spandrel's LaMa and RestoreFormer import torchvision; they are left out, nothing else."""
    from srdefense.purification.sr_models.spandrel_backend import (
        TORCHVISION_ARCHITECTURES,
        supported_architectures,
        torchvision_available,
    )

    archs = supported_architectures()
    for needed in (
        "ESRGAN",
        "SwinIR",
        "HAT",
        "RCAN",
        "OmniSR",
        "SPAN",
        "RealCUGAN",
        "DnCNN",
        "DRUNet",
        "SCUNet",
        "FBCNN",
        "NAFNet",
    ):
        assert needed in archs
    if not torchvision_available():
        assert not set(TORCHVISION_ARCHITECTURES) & set(archs)
        assert "torchvision" not in sys.modules  # the placeholder does not leak
        assert importlib.util.find_spec("torchvision") is None


def test_cli_purify_with_spandrel_sr_and_learned_denoiser(ckpt, tmp_path):
    from typer.testing import CliRunner

    from srdefense.cli.main import _load_commands, app
    from srdefense.data.io import read_image, write_png
    from srdefense.purification.learned_denoise import LearnedDenoise

    _load_commands()
    runner = CliRunner()
    sr_file, _ = ckpt("esrgan")
    dn_file, _ = ckpt("dncnn")
    src = tmp_path / "in.png"
    write_png(src, torch.rand(3, 14, 18, generator=torch.Generator().manual_seed(0)))
    out = tmp_path / "out"
    args = ["purify", str(src), "--out", str(out), "-q", "--sr", "spandrel", "--sr-weights", str(sr_file)]
    res = runner.invoke(app, [*args, "--denoiser-weights", str(dn_file)])
    assert res.exit_code == 0, res.output
    got = read_image(out / "in.png")
    assert got.shape == (3, 56, 72)  # x4 from the checkpoint
    x = read_image(src)[None]
    with torch.no_grad():
        want = SuperResolve("spandrel", weights=sr_file, tile_size=256)(LearnedDenoise(dn_file)(x))[0]
    assert (got - want).abs().max() <= 0.5 / 255 + 1e-5  # uint8 rounding only
    res = runner.invoke(app, [*args, "--denoiser", "spandrel"])
    assert res.exit_code != 0 and "needs weights" in res.output
    res = runner.invoke(
        app, ["purify", str(src), "--out", str(out), "--defense", "jpeg", "--denoiser", "wavelet"]
    )
    assert res.exit_code != 0 and "no denoising stage" in res.output


def test_x4_network_through_the_resolution_policy(ckpt):
    path, _ = ckpt("esrgan")
    x = torch.rand(2, 3, 16, 12)
    full = create_defense(f"sr:sr_model=spandrel:sr_weights={path}")
    native = create_defense(f"paper:sr_model=spandrel:sr_weights={path}:resolution=native")
    assert full.scale == 4  # from the checkpoint
    with torch.no_grad():
        assert full(x).shape == (2, 3, 64, 48)  # classified at 4x
        assert native(x).shape == (2, 3, 16, 12)  # resized back (antialiased)
