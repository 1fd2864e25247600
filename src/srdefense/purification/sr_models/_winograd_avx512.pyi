"""Types of the compiled AVX-512 Winograd kernel (``_winograd_avx512.c``; see ``winograd.py``)."""

def conv3x3_leaky(
    x: int,
    u: int,
    bias: int,
    y: int,
    n: int,
    h: int,
    w: int,
    c: int,
    k: int,
    slope: float,
    leaky: bool,
    threads: int,
    /,
) -> None:
    """NHWC float32 Winograd F(2x2, 3x3) VALID convolution, bias and LeakyReLU on data addresses.

    ``x`` is ``(n, h, w, c)``, ``u`` the Winograd weight ``(16, c, k)``, ``bias`` ``(k,)`` or 0
    for none, ``y`` the output ``(n, h - 2, w - 2, k)``; ``c`` a multiple of 16, ``k`` of 64.
    Raises RuntimeError on a CPU without AVX-512F, ValueError on other shapes.
    """

def cpu_supported() -> bool:
    """Whether this CPU has AVX-512F and FMA."""

def tiles_per_band() -> int:
    """The 2x2 output tiles per band (the compile-time ``TILES``)."""
