"""Build script for the one compiled part of srdefense; everything else is in pyproject.toml.

The AVX-512 Winograd kernel of upconv7 (``srdefense/purification/sr_models/_winograd_avx512.c``)
is an optional extension: on a platform that is not x86-64, or where the C compiler fails, the
install goes on without it and ``winograd.py`` runs its PyTorch code instead. It needs no
headers but Python's. Only its kernel functions are compiled for AVX-512F (a ``target``
attribute), so the module imports on any x86-64 CPU and runs its kernel only on those with
AVX-512F.
"""

import platform
import sys

from setuptools import Extension, setup

ext_modules = []
if platform.machine().lower() in ("x86_64", "amd64") and sys.platform != "win32":
    ext_modules.append(
        Extension(
            "srdefense.purification.sr_models._winograd_avx512",
            sources=["src/srdefense/purification/sr_models/_winograd_avx512.c"],
            extra_compile_args=["-O3", "-pthread", "-std=c11"],
            extra_link_args=["-pthread"],
            optional=True,
        )
    )

setup(ext_modules=ext_modules)
