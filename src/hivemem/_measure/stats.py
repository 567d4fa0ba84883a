"""Small, explainable statistics for growth: Student-t intervals, Theil-Sen slopes, plateau tests.

No numpy, no scipy: the inputs are a handful of repetitions (``find_leaks``)
or a few thousand samples (the profiler's leak watch), and every figure must
be reproducible by hand from the evidence a report prints.
"""

from __future__ import annotations

import math

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["mean_ci", "plateau", "theil_sen", "t_quantile"]

# Two-sided 95% Student-t quantiles (0.975) by degrees of freedom.
_T975 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    11: 2.201,
    12: 2.179,
    13: 2.160,
    14: 2.145,
    15: 2.131,
    16: 2.120,
    17: 2.110,
    18: 2.101,
    19: 2.093,
    20: 2.086,
    25: 2.060,
    30: 2.042,
    40: 2.021,
    60: 2.000,
    120: 1.980,
}


def t_quantile(df: int) -> float:
    """The 0.975 quantile of Student's t with *df* degrees of freedom (table; 1.96 beyond 120)."""
    if df < 1:
        return math.inf
    if df in _T975:
        return _T975[df]
    for k in sorted(_T975):
        if k > df:
            return _T975[k]  # the next tabulated df below is larger; this is conservative enough
    return 1.960


def mean_ci(values: Sequence[float]) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean and its two-sided 95% Student-t confidence interval.

    With one value the interval is that value (nothing to estimate spread from).
    """
    n = len(values)
    if n == 0:
        return (0.0, 0.0, 0.0)
    m = math.fsum(values) / n
    if n == 1:
        return (m, m, m)
    var = math.fsum((v - m) ** 2 for v in values) / (n - 1)
    half = t_quantile(n - 1) * math.sqrt(var / n)
    return (m, m - half, m + half)


def theil_sen(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """Theil-Sen slope of *ys* over *xs*: ``(slope, low, high)`` with Sen's 95% interval.

    The slope is the median of all pairwise slopes, so up to ~29% of wild
    points (a GC pause, one big temporary allocation) cannot move it. The
    interval comes from the normal approximation to Kendall's S (Sen 1968):
    ``C = 1.96 * sqrt(n(n-1)(2n+5)/18)``, bounds are the pairwise slopes of
    rank ``(N - C)/2`` and ``(N + C)/2 + 1``. For more than 400 points the
    pairs are taken over an even subsample of 400 points so the cost stays
    bounded (80k pairs).
    """
    n = len(xs)
    if n != len(ys):
        raise ValueError("xs and ys differ in length")
    if n < 2:
        return (0.0, 0.0, 0.0)
    if n > 400:
        step = (n - 1) / 399
        idx = sorted({round(i * step) for i in range(400)})
        xs = [xs[i] for i in idx]
        ys = [ys[i] for i in idx]
        n = len(xs)
    slopes = []
    for i in range(n - 1):
        xi, yi = xs[i], ys[i]
        for j in range(i + 1, n):
            dx = xs[j] - xi
            if dx != 0:
                slopes.append((ys[j] - yi) / dx)
    if not slopes:
        return (0.0, 0.0, 0.0)
    slopes.sort()
    big_n = len(slopes)
    mid = big_n // 2
    slope = slopes[mid] if big_n % 2 else (slopes[mid - 1] + slopes[mid]) / 2
    c = 1.96 * math.sqrt(n * (n - 1) * (2 * n + 5) / 18)
    lo_rank = max(math.floor((big_n - c) / 2), 0)
    hi_rank = min(math.ceil((big_n + c) / 2), big_n - 1)
    return (slope, slopes[lo_rank], slopes[hi_rank])


def plateau(xs: Sequence[float], ys: Sequence[float], *, tail: float = 1 / 3) -> tuple[bool, float, float]:
    """Has the series levelled off? ``(plateaued, tail_slope, tail_slope_low)``.

    Takes the last *tail* fraction of the points (at least 3) and fits a
    Theil-Sen slope there: the series has plateaued when the tail's 95%
    interval includes zero or lies below it, i.e. the recent points give no
    evidence of growth even if the whole series does (a cache that filled
    and stopped).
    """
    n = len(xs)
    k = max(3, math.ceil(n * tail))
    if n < 3:
        return (True, 0.0, 0.0)
    slope, low, _high = theil_sen(xs[-k:], ys[-k:])
    return (low <= 0.0, slope, low)
