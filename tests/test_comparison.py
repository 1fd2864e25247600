"""Issue 4: the paper-faithful pipeline, the ablation group, 'all', and the report sections."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from srdefense.evaluation import evaluate
from srdefense.evaluation.comparison import ABLATIONS, PAPER_ORDER
from srdefense.evaluation.config import ConfigError, resolve_defense_names
from srdefense.evaluation.report import write_report
from srdefense.purification import (
    JPEG,
    Compose,
    NoGradientError,
    ResizeBack,
    SuperResolve,
    UInt8Quantize,
    WaveletDenoise,
    create_defense,
    list_defenses,
)
from srdefense.purification.registry import DEFENSES


def _photo(h: int = 40, w: int = 48) -> torch.Tensor:
    from srdefense.data.samples import embedded_samples

    im = Image.open(embedded_samples()[3][0]).convert("RGB").resize((w, h), Image.BICUBIC)
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)[None]


def test_registry_names_of_the_issue_are_all_there() -> None:
    wanted = {
        "none", "paper", "paper-faithful", "wd", "sr", "nearest", "bicubic", "jpeg", "bit-depth", "median",
        "feature-squeezing", "tvm", "quilting", "random-resize-pad", "pixel-deflection",
    }  # fmt: skip
    assert wanted <= {d.name for d in list_defenses()}
    for d in list_defenses():
        assert d.reference and d.description
    assert set(PAPER_ORDER) <= wanted


def test_matplotlib_jpeg_save_is_reproduced_exactly() -> None:
    """The official code's hidden step: plt.imsave(float image) to JPEG, read back."""
    x = (_photo() + 0.6 / 255).clamp(0, 1)  # off the uint8 grid, as a denoised image is
    buf = io.BytesIO()
    matplotlib.image.imsave(buf, x[0].permute(1, 2, 0).numpy(), format="jpg")
    ref = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float32) / 255
    ours = JPEG(quality=75)(UInt8Quantize("floor")(x))[0].permute(1, 2, 0).numpy()
    assert np.array_equal(ours, ref)
    # rounding instead of truncation is a different image: the check above can fail
    rounded = JPEG(quality=75)(UInt8Quantize("round")(x))[0].permute(1, 2, 0).numpy()
    assert not np.array_equal(rounded, ref)


def test_uint8_quantize_floor_and_round() -> None:
    x = (
        torch.tensor([0.0, 0.5 / 255, 0.999 / 255, 1.5 / 255, 254.6 / 255, 1.0])
        .reshape(1, 1, 2, 3)
        .repeat(1, 3, 1, 1)
    )
    assert (UInt8Quantize("floor")(x) * 255).round()[0, 0].flatten().tolist() == [0, 0, 0, 1, 254, 255]
    assert (UInt8Quantize("round")(x) * 255).round()[0, 0].flatten().tolist() == [0, 0, 1, 2, 255, 255]
    with pytest.raises(ValueError, match="rounding"):
        UInt8Quantize("ceil")


def test_paper_faithful_is_the_explicit_composition_and_has_no_gradient() -> None:
    d = create_defense("paper-faithful", sr_model="bicubic")
    kinds = [type(s) for s in d.stages]
    assert kinds == [WaveletDenoise, UInt8Quantize, JPEG, SuperResolve, UInt8Quantize]
    assert d.stages[0].legacy_sigma and d.stages[2].quality == 75 and d.scale == 2
    assert not d.differentiable and not DEFENSES.get("paper-faithful").differentiable
    x = _photo()
    with torch.no_grad():
        manual = x
        for s in d.stages:
            manual = s(manual)
        torch.testing.assert_close(d(x), manual, rtol=0, atol=0)
    levels = d(x) * 255
    assert (levels - levels.round()).abs().max() < 1e-4  # the output is on the uint8 grid
    xg = x.clone().requires_grad_(True)
    with pytest.raises(NoGradientError):
        d(xg).sum().backward()


@pytest.mark.parametrize("spec", list(ABLATIONS))
def test_every_ablation_builds_and_changes_what_it_says(spec: str) -> None:
    d = create_defense(spec)
    stages = list(d.stages) if isinstance(d, Compose) else [d]
    if spec.startswith("paper:sr_model="):
        assert isinstance(stages[1], SuperResolve) and stages[1].model_name == spec.split("=")[1]
    if spec == "paper:resolution=native":
        assert isinstance(stages[-1], ResizeBack)
        assert d(_photo()).shape == (1, 3, 40, 48)
    if spec.startswith("paper:sigma="):
        value = spec.split("=")[1]
        assert stages[0].sigma == (None if value == "none" else float(value))
    if spec == "wd":
        assert isinstance(d, WaveletDenoise)
    if spec == "sr":
        assert isinstance(d, SuperResolve)


def test_group_expansion() -> None:
    assert resolve_defense_names(["ablations"]) == list(ABLATIONS)
    everything = resolve_defense_names(["all"])
    assert "quilting" not in everything  # needs its patch database
    assert set(everything) == {d.name for d in list_defenses()} - {"quilting"}
    with_db = resolve_defense_names(["all", "quilting:database=/some/folder"])
    assert with_db[-1] == "quilting:database=/some/folder"
    with pytest.raises(ConfigError, match="all, ablations"):
        resolve_defense_names(["nope"])


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20 * self.fc(torch.tanh(self.conv(x - 0.5)).mean((2, 3)))


def test_report_has_the_paper_layout_and_the_ablation_section(tmp_path: Path) -> None:
    model = _Tiny().eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 16, 16, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    from srdefense.attacks import create_attack

    defenses = ["bit-depth", "none", "jpeg", "wd", "sr:sr_model=nearest", "paper:sigma=0.02:sr_model=bicubic"]
    res = evaluate(model, defenses, [create_attack("fgsm", eps=8 / 255)], (x, y), eps=[8 / 255])
    write_report(res, tmp_path)
    md = (tmp_path / "report.md").read_text()
    comp = md.split("## Comparison with competing defenses (layout of the paper)")[1].split("\n## ")[0]
    rows = [
        line.split("|")[1].strip()
        for line in comp.splitlines()
        if line.startswith("| ") and "---" not in line
    ]
    assert rows[1:] == ["none", "jpeg", "bit-depth"]  # the paper's order, header first
    jpeg_row = next(line for line in comp.splitlines() if line.startswith("| jpeg"))
    acc = res.row("jpeg", "clean")["accuracy"]
    assert f"{100 * acc:.1f}" in jpeg_row
    abl = md.split("## Ablation of the pipeline")[1].split("\n## ")[0]
    assert "| wd | wavelet denoising only |" in abl
    assert "sr:sr_model=nearest" in abl and "paper:sigma=0.02:sr_model=bicubic" in abl
    html = (tmp_path / "report.html").read_text()
    assert "Ablation of the pipeline" in html and "layout of the paper" in html
