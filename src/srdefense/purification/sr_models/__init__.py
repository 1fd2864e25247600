"""Super-resolution networks: waifu2x ``upconv_7`` and EDSR / EDSR-baseline."""

from .edsr import EDSR, detect_edsr_format, edsr_from_state_dict, load_edsr, sha256_from_name
from .upconv7 import UPCONV7_HALO, UpConv7, upconv7_flops

__all__ = [
    "EDSR",
    "UPCONV7_HALO",
    "UpConv7",
    "detect_edsr_format",
    "edsr_from_state_dict",
    "load_edsr",
    "sha256_from_name",
    "upconv7_flops",
]
