"""Build script for the two compiled parts of srdefense; everything else is in pyproject.toml.

Both are optional extensions: where the C compiler fails, the install goes on without them and
the PyTorch code runs instead.

* the wavelet denoiser's 2-tap kernel (``srdefense/purification/wavelet/_haar_native.c``),
  plain C, built wherever POSIX threads are;
* the Winograd kernels of upconv7 (``srdefense/purification/sr_models/_winograd_native.c``, one
  template ``_winograd_kernel.h`` compiled for AVX-512F and for AVX2), on x86-64 only. Only
  the kernel functions are compiled for those instruction sets (``target`` attributes), so the
  module imports on any x86-64 CPU and runs a kernel only where the CPU has its instructions.

Neither needs headers but Python's, their shared ``src/srdefense/_kernel_threads.h`` and the
Winograd template.
"""

import platform
import sys

from setuptools import Extension, setup

# OpenMP on Linux: the kernels then share PyTorch's own libgomp threads (see
# src/srdefense/_kernel_threads.h); elsewhere they start POSIX threads of their own
THREADS = ["-fopenmp"] if sys.platform.startswith("linux") else ["-pthread"]


def kernel(name: str, *headers: str) -> Extension:
    """The optional C kernel ``name``, a dotted module name whose source is ``src/<its path>.c``.

    ``headers``: the files beside that source which it includes (they ship in the sdist, and a
    change to one rebuilds).
    """
    source = "src/" + name.replace(".", "/") + ".c"
    folder = source.rsplit("/", 1)[0]
    return Extension(
        name,
        sources=[source],
        depends=["src/srdefense/_kernel_threads.h", *(f"{folder}/{h}" for h in headers)],
        extra_compile_args=["-O3", "-std=c11", *THREADS],
        extra_link_args=THREADS,
        optional=True,
    )


ext_modules = []
if sys.platform != "win32":  # plain C with POSIX threads or OpenMP
    ext_modules.append(kernel("srdefense.purification.wavelet._haar_native"))
if platform.machine().lower() in ("x86_64", "amd64") and sys.platform != "win32":
    ext_modules.append(kernel("srdefense.purification.sr_models._winograd_native", "_winograd_kernel.h"))

setup(ext_modules=ext_modules)
