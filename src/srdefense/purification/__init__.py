"""Purifiers: wavelet denoising, super-resolution, composition and the defense registry."""

from .base import BPDA, Identity, Lambda, NoGradientError, Purifier
from .compose import Compose, Defended, ResizeBack
from .registry import DefenseInfo, create_defense, list_defenses, register_defense

__all__ = [
    "BPDA",
    "Compose",
    "Defended",
    "DefenseInfo",
    "Identity",
    "Lambda",
    "NoGradientError",
    "Purifier",
    "ResizeBack",
    "create_defense",
    "list_defenses",
    "register_defense",
]
