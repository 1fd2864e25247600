"""What this PyTorch build and CPU offer oneDNN's fused convolutions: the one place that asks.

The fast inference paths (``upconv7``'s and EfficientNet-Lite's folded form) call
``torch.ops.mkldnn._convolution_pointwise`` directly; each must first know whether that op
exists, whether oneDNN is switched on, whether an autocast is active (the op does not follow
one), and whether oneDNN has bf16 kernels on this CPU (it raises where it has none: AVX2-only
CPUs). These checks are PyTorch internals that moved between versions; they live here once.
"""

from __future__ import annotations

import functools
import os

import torch


def _fused_conv_op() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
    except (AttributeError, RuntimeError):
        return False


HAS_FUSED_CONV = _fused_conv_op()
"""Whether this build has oneDNN's fused convolution op (``mkldnn._convolution_pointwise``)."""


def onednn_enabled() -> bool:
    """Whether oneDNN is switched on now (``torch.backends.mkldnn.flags(enabled=False)`` turns it off)."""
    return bool(torch._C._get_mkldnn_enabled())


def cpu_autocast_dtype() -> torch.dtype | None:
    """The dtype of an active CPU autocast, or ``None`` when none is active."""
    try:
        if torch.is_autocast_enabled("cpu"):  # torch >= 2.4
            return torch.get_autocast_dtype("cpu")
    except TypeError:
        if torch.is_autocast_cpu_enabled():
            return torch.get_autocast_cpu_dtype()
    return None


def bf16_conv_kernels() -> bool:
    """Whether oneDNN runs bf16 convolutions natively on this CPU (as capped by ``ONEDNN_MAX_CPU_ISA``)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


_BELOW_AVX2 = ("SSE41", "AVX")
_BELOW_AVX512 = (*_BELOW_AVX2, "AVX2", "AVX2_VNNI", "AVX2_VNNI_2")


def _isa_cap() -> str:
    """``ONEDNN_MAX_CPU_ISA`` (or the older ``DNNL_MAX_CPU_ISA``), upper case; empty when unset."""
    return (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()


@functools.cache
def isa_cap_allows_avx2() -> bool:
    """Whether ``ONEDNN_MAX_CPU_ISA`` leaves the process AVX2 code (unset, or AVX2 and above).

    The CPU itself is not asked: the compiled kernels check it. A cap below AVX2 asks for the
    code paths of an older CPU, so srdefense's own AVX2 kernels step aside under it too. Read
    once per process, as oneDNN reads its cap once.
    """
    return _isa_cap() not in _BELOW_AVX2


@functools.cache
def avx512_conv_kernels() -> bool:
    """Whether oneDNN runs float32 convolutions with AVX-512 here (its ``avx512_core`` kernels).

    True where the CPU has AVX-512 (F, BW, VL, DQ: ``torch.cpu._is_avx512_supported``) and
    ``ONEDNN_MAX_CPU_ISA`` (or the older ``DNNL_MAX_CPU_ISA``) does not cap oneDNN below it.
    Read once per process, as oneDNN reads its cap once.
    """
    if _isa_cap() in _BELOW_AVX512:
        return False
    try:
        return bool(torch.cpu._is_avx512_supported())
    except (AttributeError, RuntimeError):
        return False
