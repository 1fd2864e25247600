"""Throughput of :func:`srdefense.purification.wavelet.denoise_wavelet` against scikit-image.

``bench_wavelet(n, size)`` denoises ``n`` photos of ``size`` x ``size`` with the paper's setting
(db1, BayesShrink, soft, YCbCr, sigma 0.01) as one torch batch, and with
``skimage.restoration.denoise_wavelet`` one photo at a time, on the CPU with 2 threads.
It prints nothing and returns the timings.
"""

from __future__ import annotations

import resource
import warnings

import numpy as np
import torch
from bench_sr import _best_time

OPTIONS = dict(sigma=0.01, wavelet="db1", mode="soft", convert2ycbcr=True, method="BayesShrink")


def _photos(n: int, size: int) -> np.ndarray:
    """``n`` RGB photos (n, size, size, 3) float64 in [0, 1], cycling the embedded samples."""
    from PIL import Image

    from srdefense.data.samples import embedded_samples

    imgs = []
    for path, _ in embedded_samples():
        im = Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC)
        imgs.append(np.asarray(im, dtype=np.float64) / 255.0)
    return np.stack([imgs[i % len(imgs)] for i in range(n)])


def bench_wavelet(n: int = 64, size: int = 224, threads: int = 2, repeat: int = 3) -> dict:
    """Time torch (float32 and float64, one batch) against scikit-image (one photo at a time).

    Args:
        n: number of photos.
        size: side of the square photos.
        threads: ``torch.set_num_threads`` during the measurement (restored afterwards).
        repeat: best of this many runs is reported.

    Returns:
        dict with ``n``, ``size``, ``threads``, the seconds ``skimage_s``, ``torch_float32_s``,
        ``torch_float64_s``, images per second for each, the speed-ups ``speedup_float32`` and
        ``speedup_float64`` (skimage time / torch time), ``max_abs_diff_float64`` and
        ``page_faults_per_float32_call`` (minor page faults of one float32 call: the output's
        own pages are ~9.4k for 64 photos; more means temporaries were faulted in again).
    """
    from skimage.restoration import denoise_wavelet as sk_denoise

    from srdefense.purification.wavelet import denoise_wavelet

    photos = _photos(n, size)
    x64 = torch.from_numpy(photos).permute(0, 3, 1, 2).contiguous()
    x32 = x64.float()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            denoise_wavelet(x32[:2], **OPTIONS)  # warm-up (filter/index caches)
            denoise_wavelet(x64[:2], **OPTIONS)
            t32 = _best_time(lambda: denoise_wavelet(x32, **OPTIONS), repeat, warmup=0)
            t64 = _best_time(lambda: denoise_wavelet(x64, **OPTIONS), repeat, warmup=0)
            out64 = denoise_wavelet(x64, **OPTIONS)
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            denoise_wavelet(x32, **OPTIONS)
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0

        ref = []

        def run_skimage() -> None:
            ref.clear()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for img in photos:
                    ref.append(sk_denoise(img, channel_axis=-1, **OPTIONS))

        tsk = _best_time(run_skimage, repeat, warmup=0)
    finally:
        torch.set_num_threads(old_threads)
    diff = float(np.abs(out64.permute(0, 2, 3, 1).numpy() - np.stack(ref)).max())
    return {
        "n": n,
        "size": size,
        "threads": threads,
        "skimage_s": tsk,
        "torch_float32_s": t32,
        "torch_float64_s": t64,
        "skimage_img_per_s": n / tsk,
        "torch_float32_img_per_s": n / t32,
        "torch_float64_img_per_s": n / t64,
        "speedup_float32": tsk / t32,
        "speedup_float64": tsk / t64,
        "max_abs_diff_float64": diff,
        "page_faults_per_float32_call": faults,
    }
