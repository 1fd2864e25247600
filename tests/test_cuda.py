"""Device checks: the same numbers on a CUDA GPU as on the CPU (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch

import srdefense
from srdefense.attacks import create_attack
from srdefense.data import collate

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module", autouse=True)
def _exact_fp32() -> object:
    # TF32 matmuls/convolutions differ from fp32 by ~1e-3: compare true fp32 arithmetic
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.fixture(scope="module")
def samples() -> tuple[torch.Tensor, torch.Tensor]:
    ds = srdefense.load_dataset("samples")
    x, y, _ = collate([ds[i] for i in range(len(ds))])
    return x, y


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("legacy", [True, False])
def test_wavelet_denoising_on_cuda_equals_cpu(samples, dtype, legacy) -> None:  # type: ignore[no-untyped-def]
    x = samples[0][:6].to(dtype)
    for kw in (
        dict(sigma=0.01, convert2ycbcr=True, legacy_sigma=legacy),
        dict(convert2ycbcr=True, wavelet="db4"),
        dict(sigma=0.04, method="VisuShrink", mode="hard"),
    ):
        cpu = srdefense.denoise_wavelet(x, **kw)
        gpu = srdefense.denoise_wavelet(x.cuda(), **kw).cpu()
        tol = 1e-10 if dtype == torch.float64 else 1e-5
        assert (cpu - gpu).abs().max().item() <= tol, kw


def test_super_resolution_and_tiling_on_cuda_equal_cpu(samples) -> None:  # type: ignore[no-untyped-def]
    x = samples[0][:4]
    sr = srdefense.SuperResolve("upconv7")
    cpu = sr(x)
    gpu = sr.cuda()(x.cuda()).cpu()
    assert (cpu - gpu).abs().max().item() <= 1e-4
    tiled = srdefense.SuperResolve("upconv7", tile_size=96).cuda()(x.cuda()).cpu()
    assert (tiled - gpu).abs().max().item() <= 1e-5


def test_defended_model_logits_and_gradients_on_cuda(samples) -> None:  # type: ignore[no-untyped-def]
    x, y = samples
    clf = srdefense.create_classifier("efficientnet_lite0")
    model = srdefense.Defended(srdefense.paper_defense(), clf).eval()
    with torch.no_grad():
        cpu = model(x[:4])
        gpu = model.cuda()(x[:4].cuda()).cpu()
    assert (cpu - gpu).abs().max().item() <= 1e-2 * cpu.abs().max().item()
    assert torch.equal(cpu.argmax(1), gpu.argmax(1))
    xg = x[:2].cuda().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(xg), y[:2].cuda())
    (g,) = torch.autograd.grad(loss, xg)
    assert torch.isfinite(g).all() and g.abs().sum().item() > 0
    model.cpu()


def test_pgd_on_cuda_and_white_box_through_the_defense(samples) -> None:  # type: ignore[no-untyped-def]
    x, y = samples
    clf = srdefense.create_classifier("efficientnet_lite0", device="cuda")
    xc, yc = x.cuda(), y.cuda()
    adv = create_attack("pgd", eps=4 / 255)(clf, xc, yc, generator=torch.Generator("cuda").manual_seed(0))
    assert (adv - xc).abs().max().item() <= 4 / 255 + 1e-7
    with torch.no_grad():
        assert (clf(adv).argmax(1) == yc).float().mean().item() <= 0.05
    # the paper pipeline is differentiable end to end: full white-box PGD through it
    defended = srdefense.Defended(srdefense.paper_defense(), clf).cuda().eval()
    adv_wb = create_attack("pgd", eps=4 / 255)(
        defended, xc, yc, generator=torch.Generator("cuda").manual_seed(0)
    )
    with torch.no_grad():
        acc = (defended(adv_wb).argmax(1) == yc).float().mean().item()
    assert acc <= 0.10, acc


def test_evaluate_on_cuda_matches_cpu(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from srdefense.evaluation import EvalConfig, run_config

    def run(device: str):  # type: ignore[no-untyped-def]
        cfg = EvalConfig(
            data="samples",
            n=8,
            classifier="efficientnet_lite0",
            defenses=["none", "paper", "jpeg"],
            attacks=["fgsm"],
            eps=[4 / 255],
            device=device,
            out=str(tmp_path / device),
        )
        return run_config(cfg, report=False)

    cpu, gpu = run("cpu"), run("cuda")
    for a, b in zip(cpu.summary, gpu.summary, strict=True):
        assert (a["defense"], a["key"]) == (b["defense"], b["key"])
        assert abs(a["accuracy"] - b["accuracy"]) <= 1 / 8 + 1e-9  # at most one image flips
