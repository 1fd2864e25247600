"""Types of the compiled Winograd kernels (``_winograd_native.c``; see ``winograd.py``)."""

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
    pad: int,
    slope: float,
    leaky: bool,
    threads: int,
    isa: str,
    /,
) -> None:
    """NHWC float32 Winograd F(2x2, 3x3) convolution, bias and LeakyReLU on data addresses.

    ``x`` is ``(n, h, w, c)``, ``u`` the Winograd weight ``(16, c, k)``, ``bias`` ``(k,)`` or 0
    for none, ``y`` the output ``(n, h + 2 pad - 2, w + 2 pad - 2, k)``, zero padding ``pad``
    (0 to 2) read in place; ``c`` and ``k`` in ``channel_multiples(isa)``. Raises RuntimeError
    where the CPU lacks ``isa``'s instructions, ValueError on other shapes or an unknown ``isa``.
    """

def cpu_isas() -> tuple[str, ...]:
    """The instruction sets (``"avx512"``, ``"avx2"``) whose kernel this CPU runs, fastest first."""

def channel_multiples(isa: str, /) -> tuple[int, int]:
    """Input and output channel counts of the ``isa`` kernel must be multiples of these."""

def tiles_per_band(isa: str, /) -> int:
    """The 2x2 output tiles per band of the ``isa`` kernel (a compile-time constant)."""
