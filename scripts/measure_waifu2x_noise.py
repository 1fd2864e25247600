"""PSNR of the shipped waifu2x upconv_7 models (plain and noise 0..3) on the bundled photos.

Usage (from the repository root)::

    .venv/bin/python scripts/measure_waifu2x_noise.py

Protocol (as in ``src/srdefense/purification/weights/README.md``): the 20 embedded ImageNet
photos, 192 x 192 centre crops, downscaled x2 (bicubic, antialiased), degraded, then
super-resolved x2 and compared with the crop (PSNR, dB, mean over the photos). Degradations:
none; JPEG at quality 75 and 50 (PIL, 4:2:0, what the noise models were trained to remove);
a random +-4/255 sign pattern (the size of an Linf 4/255 perturbation). Also prints the size
of each weight file and its deflate-compressed size (what it adds to a wheel).
"""

from __future__ import annotations

import io
import zlib

import numpy as np
import torch
from PIL import Image

from srdefense.evaluation.restorers import sample_crops
from srdefense.purification.superres import UPCONV7_WEIGHTS, WEIGHTS_DIR, SuperResolve, create_sr_model


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    out = []
    for im in x:
        arr = (im.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        out.append(torch.from_numpy(np.array(Image.open(buf).convert("RGB"))).permute(2, 0, 1).float() / 255)
    return torch.stack(out)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.double() - b.double()).square().mean(dim=(1, 2, 3))
    return float((10 * torch.log10(1 / mse)).mean())


def main() -> None:
    torch.manual_seed(0)
    hr = sample_crops(192)
    lr = torch.nn.functional.interpolate(hr, scale_factor=0.5, mode="bicubic", antialias=True).clamp(0, 1)
    sign = torch.randint(0, 2, lr.shape, generator=torch.Generator().manual_seed(0)).float() * 2 - 1
    inputs = {
        "clean": lr,
        "jpeg q75": jpeg(lr, 75),
        "jpeg q50": jpeg(lr, 50),
        "sign 4/255": (lr + 4 / 255 * sign).clamp(0, 1),
    }
    nets = {"bicubic": SuperResolve("bicubic")}
    for lvl in UPCONV7_WEIGHTS:
        nets["upconv7" if lvl is None else f"upconv7:noise={lvl}"] = SuperResolve(
            create_sr_model("upconv7", noise_level=lvl), tile_size=None
        )
    print("| network | " + " | ".join(inputs) + " |")
    print("|---|" + "---|" * len(inputs))
    with torch.no_grad():
        for name, net in nets.items():
            vals = [psnr(net(x), hr) for x in inputs.values()]
            print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")
    print()
    total = packed = 0
    for lvl, (fname, _) in UPCONV7_WEIGHTS.items():
        data = (WEIGHTS_DIR / fname).read_bytes()
        z = len(zlib.compress(data, 9))
        total, packed = total + len(data), packed + z
        print(f"{fname}: {len(data)} bytes, deflate {z} bytes (level {lvl})")
    print(f"all: {total} bytes, deflate {packed} bytes")


if __name__ == "__main__":
    main()
