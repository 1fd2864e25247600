"""Confidence intervals for accuracies."""

from __future__ import annotations

import math

Z95 = 1.959963984540054
"""Two-sided 95% quantile of the standard normal distribution."""


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion.

    Unlike the normal-approximation interval it stays inside [0, 1] and is sensible for
    accuracies near 0 or 1 and for small ``n``.

    Args:
        correct: number of successes (0 <= correct <= n).
        n: number of trials; ``n == 0`` gives the uninformative interval (0, 1).
        z: normal quantile (1.96 for 95%).

    Returns:
        ``(low, high)``.

    Example:
        >>> tuple(round(v, 4) for v in wilson_interval(8, 10))
        (0.4902, 0.9433)
    """
    if n < 0 or correct < 0 or correct > n:
        raise ValueError(f"wilson_interval: expected 0 <= correct <= n, got correct={correct}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    lo = 0.0 if correct == 0 else max(0.0, center - half)
    hi = 1.0 if correct == n else min(1.0, center + half)
    return lo, hi
