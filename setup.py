"""Build script for the two compiled parts of srdefense; everything else is in pyproject.toml.

Both are optional extensions: where the C compiler fails, the install goes on without them and
the PyTorch code runs instead.

* the wavelet denoiser's 2-tap kernel (``srdefense/purification/wavelet/_haar_native.c``),
  plain C, built wherever POSIX threads are;
* the AVX-512 Winograd kernel of upconv7 (``srdefense/purification/sr_models/_winograd_avx512.c``),
  on x86-64 only. Only its kernel functions are compiled for AVX-512F (a ``target``
  attribute), so the module imports on any x86-64 CPU and runs its kernel only on those with
  AVX-512F.

Neither needs headers but Python's and their shared ``src/srdefense/_kernel_threads.h``.
"""

import platform
import sys

from setuptools import Extension, setup

# OpenMP on Linux: the kernels then share PyTorch's own libgomp threads (see
# src/srdefense/_kernel_threads.h); elsewhere they start POSIX threads of their own
THREADS = ["-fopenmp"] if sys.platform.startswith("linux") else ["-pthread"]


def kernel(name: str) -> Extension:
    """The optional C kernel ``name``, a dotted module name whose source is ``src/<its path>.c``."""
    return Extension(
        name,
        sources=["src/" + name.replace(".", "/") + ".c"],
        depends=["src/srdefense/_kernel_threads.h"],
        extra_compile_args=["-O3", "-std=c11", *THREADS],
        extra_link_args=THREADS,
        optional=True,
    )


ext_modules = []
if sys.platform != "win32":  # plain C with POSIX threads or OpenMP
    ext_modules.append(kernel("srdefense.purification.wavelet._haar_native"))
if platform.machine().lower() in ("x86_64", "amd64") and sys.platform != "win32":
    ext_modules.append(kernel("srdefense.purification.sr_models._winograd_avx512"))

setup(ext_modules=ext_modules)
