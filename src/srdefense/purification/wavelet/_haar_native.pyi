"""Types of the compiled 2-tap wavelet kernel (``_haar_native.c``; see ``engine.py``)."""

from collections.abc import Sequence

def denoise(
    x: int,
    y: int,
    sigma: int,
    scale: int,
    b: int,
    h: int,
    w: int,
    levels: int,
    ana: Sequence[float],
    syn: Sequence[float],
    visu: bool,
    threads: int,
    /,
) -> None:
    """Soft wavelet shrinkage of ``b`` float32 planes ``(h, w)`` at data addresses.

    ``x`` and ``y`` are ``(b, h, w)``, ``sigma`` and ``scale`` ``(b,)`` (``scale`` 0 for none),
    ``ana`` and ``syn`` the 4 x 4 analysis and synthesis matrices row by row; ``visu`` picks
    VisuShrink over BayesShrink. Raises ValueError on bad sizes or addresses.
    """
