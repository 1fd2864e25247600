"""Purifiers: wavelet denoising, super-resolution, competing defenses, composition, registry."""

from .base import BPDA, Identity, Lambda, NoGradientError, Purifier
from .color import rgb_to_ycbcr, ycbcr_to_rgb
from .compose import Compose, Defended, ResizeBack
from .jpeg import JPEG, jpeg_compress
from .learned_denoise import DenoiserInfo, LearnedDenoise, create_denoiser, list_denoisers
from .pipeline import UInt8Quantize, paper_defense
from .precision import PrecisionFidelity, precision_fidelity, resolve_precision, set_precision
from .quantize import (
    BitDepthReduction,
    FeatureSqueezing,
    MedianSmoothing,
    bit_depth_reduction,
    median_filter,
)
from .quilting import ImageQuilting, build_patch_database, quilt
from .randomized import PixelDeflection, RandomResizePad, pixel_deflection, random_resize_pad
from .registry import DefenseInfo, create_defense, list_defenses, register_defense
from .superres import (
    SRModelInfo,
    SuperResolve,
    create_sr_model,
    get_sr_model_info,
    list_sr_models,
    super_resolve,
    tiled_forward,
)
from .tvm import TotalVarianceMinimization, tv_reconstruct
from .wavelet import WaveletDenoise, denoise_wavelet, dwt2, idwt2, wavedec2, waverec2

__all__ = [
    "BPDA",
    "JPEG",
    "BitDepthReduction",
    "Compose",
    "Defended",
    "DefenseInfo",
    "DenoiserInfo",
    "FeatureSqueezing",
    "Identity",
    "ImageQuilting",
    "Lambda",
    "LearnedDenoise",
    "MedianSmoothing",
    "NoGradientError",
    "PixelDeflection",
    "PrecisionFidelity",
    "Purifier",
    "RandomResizePad",
    "ResizeBack",
    "SRModelInfo",
    "SuperResolve",
    "TotalVarianceMinimization",
    "UInt8Quantize",
    "WaveletDenoise",
    "bit_depth_reduction",
    "build_patch_database",
    "create_defense",
    "create_denoiser",
    "create_sr_model",
    "denoise_wavelet",
    "dwt2",
    "get_sr_model_info",
    "idwt2",
    "jpeg_compress",
    "list_defenses",
    "list_denoisers",
    "list_sr_models",
    "median_filter",
    "paper_defense",
    "pixel_deflection",
    "precision_fidelity",
    "quilt",
    "random_resize_pad",
    "register_defense",
    "resolve_precision",
    "rgb_to_ycbcr",
    "set_precision",
    "super_resolve",
    "tiled_forward",
    "tv_reconstruct",
    "wavedec2",
    "waverec2",
    "ycbcr_to_rgb",
]
