"""Statistics for small-scale experiments: mean and spread over seeds, the 95 % interval of a
difference between two arms, and a verdict on a claim of the paper stated as a direction.

The book cannot rerun the paper's ImageNet experiments; it runs small versions of them with
several seeds each. A difference between two arms is then an *estimate* with an interval, and a
claim of the paper ("MobileViT-XXS is more accurate than MobileNetV2 at similar size", Fig. 8b)
is judged by where that interval lies:

* **agrees** -- the whole interval lies on the side the paper claims;
* **contradicts** -- the whole interval lies on the other side;
* **inconclusive** -- the interval contains zero: at this scale the runs cannot tell.

The interval is Welch's: ``mean(a) - mean(b) +- t(0.975, df) * sqrt(s_a^2/n_a + s_b^2/n_b)``
with the Welch-Satterthwaite degrees of freedom, which does not assume equal variances. The
Student-t quantile is computed here (the regularised incomplete beta function, then bisection),
so the library needs no SciPy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Summary", "Interval", "summarize", "t_cdf", "t_quantile", "welch_interval",
           "paired_interval", "VERDICTS", "verdict"]

VERDICTS = ("agrees", "contradicts", "inconclusive")


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (n - 1) and count of one arm's values over seeds."""

    mean: float
    sd: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.1f} ± {self.sd:.1f} (n={self.n})"


@dataclass(frozen=True)
class Interval:
    """An estimated difference ``a - b`` and its two-sided interval at ``level``."""

    diff: float
    low: float
    high: float
    level: float = 0.95
    df: float = math.inf

    def __str__(self) -> str:
        return f"{self.diff:+.1f} [{self.low:+.1f}, {self.high:+.1f}]"


def summarize(values: Sequence[float]) -> Summary:
    """Mean, sample sd (0 for one value) and n of ``values``."""
    n = len(values)
    if n == 0:
        raise ValueError("no values to summarise: run at least one seed")
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return Summary(mean, sd, n)


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom (df = inf: the normal)."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if math.isinf(df):
        return 0.5 * (1.0 + math.erf(t / math.sqrt(2.0)))
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on t_cdf)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Interval:
    """Welch's interval for ``mean(a) - mean(b)`` at ``level`` (two-sided).

    Needs at least two values per arm (one seed gives no estimate of the noise)."""
    sa, sb = summarize(a), summarize(b)
    if sa.n < 2 or sb.n < 2:
        raise ValueError(f"an interval needs >= 2 seeds per arm, got {sa.n} and {sb.n}")
    va, vb = sa.sd ** 2 / sa.n, sb.sd ** 2 / sb.n
    diff = sa.mean - sb.mean
    se = math.sqrt(va + vb)
    if se == 0.0:  # identical values in both arms: no noise to speak of
        return Interval(diff, diff, diff, level, math.inf)
    df = (va + vb) ** 2 / (va ** 2 / (sa.n - 1) + vb ** 2 / (sb.n - 1))
    half = t_quantile(0.5 + level / 2.0, df) * se
    return Interval(diff, diff - half, diff + half, level, df)


def paired_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Interval:
    """The t interval of ``mean(a - b)`` for paired values (``a[i]`` and ``b[i]`` measured on
    the same run, e.g. a run's EMA and last weights): ``n - 1`` degrees of freedom."""
    if len(a) != len(b):
        raise ValueError(f"paired values need equal counts, got {len(a)} and {len(b)}")
    d = summarize([x - y for x, y in zip(a, b)])
    if d.n < 2:
        raise ValueError(f"an interval needs >= 2 seeds, got {d.n}")
    if d.sd == 0.0:
        return Interval(d.mean, d.mean, d.mean, level, math.inf)
    half = t_quantile(0.5 + level / 2.0, d.n - 1) * d.sd / math.sqrt(d.n)
    return Interval(d.mean, d.mean - half, d.mean + half, level, float(d.n - 1))


def verdict(interval: Interval, claimed_sign: int = +1) -> str:
    """``agrees`` / ``contradicts`` / ``inconclusive`` for a claim that ``a - b`` has the sign
    ``claimed_sign`` (+1: a is larger, -1: a is smaller)."""
    if claimed_sign not in (+1, -1):
        raise ValueError(f"claimed_sign must be +1 or -1, got {claimed_sign}")
    low, high = sorted((claimed_sign * interval.low, claimed_sign * interval.high))
    if low > 0:
        return "agrees"
    if high < 0:
        return "contradicts"
    return "inconclusive"
