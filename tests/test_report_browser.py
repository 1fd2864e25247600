"""The HTML report as a person sees it: rendered by headless Chromium.

Needs Debian's ``chromium`` package (``apt-get install -y --no-install-recommends chromium``);
skipped with that hint when no Chromium is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from _eval_helpers import CountingFGSM as FGSM
from _eval_helpers import TinyNet
from srdefense.evaluation import evaluate
from srdefense.purification import Identity, Lambda

pytestmark = pytest.mark.browser

CHROMIUM = next(
    (p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None
)
SETUP = "apt-get update && apt-get install -y --no-install-recommends chromium"


# the tiny stand-ins of the evaluation tests (a CNN and an FGSM that records its calls)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("report")
        model = TinyNet().eval()
        g = torch.Generator().manual_seed(1)
        # smooth, photo-like images so the example grid shows something recognisable
        yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
        base = torch.stack([xx, yy, 1 - xx * yy])
        images = (base + 0.3 * torch.rand(10, 3, 1, 1, generator=g) - 0.15).clamp(0, 1)
        images = (images + 0.1 * torch.rand(images.shape, generator=g)).clamp(0, 1)
        with torch.no_grad():
            labels = model(images).argmax(1)
        labels[::4] = (labels[::4] + 1) % 4  # some errors, so the tables show more than one colour
        up = Lambda(
            lambda x: nn.functional.interpolate(x, scale_factor=2, mode="bicubic").clamp(0, 1),
            scale=2,
            name="up",
        )
        blur = Lambda(lambda x: nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False), name="blur")
        evaluate(
            model,
            {"none": Identity(), "up": up, "blur": blur},
            [FGSM(4 / 255), FGSM(32 / 255)],
            (images, labels),
            batch_size=5,
            out=out,
            n_examples=3,
            class_names=["sky", "sea", "sand", "stone"],
            report=True,
        )
    finally:
        torch.set_num_threads(n_threads)
    return out / "report.html"


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile = tmp_path / "profile"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    env = {**os.environ, "HOME": str(tmp_path)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason=f"headless Chromium is not installed (set-up: {SETUP})")
def test_report_renders_tables_and_images(report: Path, tmp_path: Path) -> None:
    url = report.resolve().as_uri()
    dom = _chromium(tmp_path, "--enable-logging=stderr", "--v=0", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    # every image decoded (set by the report's own script once the page has loaded)
    root = re.search(r"<html[^>]*>", html)
    assert root is not None
    assert 'data-images-ok="true"' in root.group(0), root.group(0)
    assert 'data-images="3"' in root.group(0)  # heatmap, accuracy vs eps, examples
    assert "data-js-errors" not in root.group(0)
    # no console errors or uncaught exceptions
    console_lines = [ln for ln in dom.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert console_lines == []
    for heading in (
        "Accuracy per defense and attack",
        "Clean accuracy",
        "Worst case over attacks",
        "Examples",
    ):
        assert heading in html
    assert html.count('<table class="data">') >= 5

    shot = tmp_path / "report.png"
    res = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,1800", url)
    assert shot.exists(), res.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=np.float64)
    assert pixels.shape[:2] == (1800, 1280)
    assert pixels.std() > 20  # not a blank page
    non_white = (pixels.min(axis=2) < 235).mean()
    assert non_white > 0.05
    # the accuracy table's tinted cells (red-to-green) are on screen in the first screenful
    tinted = (np.abs(pixels[..., 0] - pixels[..., 1]) > 40) & (pixels[..., 2] > 150)
    assert tinted[:1000].sum() > 500
