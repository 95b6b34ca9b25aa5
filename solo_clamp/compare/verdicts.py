"""Verdicts from intervals: is one method better than another on a metric?

Runs with the same seed share their data order, initial weights and few-label draws, so two
methods are compared by the **paired** differences of their per-seed scores: a 95 % Student
t interval on the mean difference (``scipy.stats.ttest_rel``). For kNN and linear top-1 a
second interval resamples the test images (a paired bootstrap, ``scipy.stats.bootstrap``):
each image's correctness is kept per run, so the same resampled images score both methods
for every seed. A verdict is "better" or "worse" only when every interval available excludes
0 on the same side, else "not distinguishable"; with one seed the seed interval does not
exist and nothing is distinguishable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
BETTER, WORSE, TIED = "better", "worse", "not distinguishable"


@dataclass(frozen=True)
class Interval:
    """A mean difference (a − b, in accuracy points) and its confidence interval."""

    mean: float
    low: float
    high: float

    @property
    def sign(self) -> int:
        """+1 when the interval lies above 0, −1 below, 0 when it contains 0."""
        return 1 if self.low > 0 else -1 if self.high < 0 else 0

    def describe(self) -> str:
        return f"{self.mean:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def paired_seed_interval(
    a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE
) -> Optional[Interval]:
    """The t interval of ``mean(a − b)`` over seeds (``a[i]``, ``b[i]``: the same seed);
    None with fewer than 2 seeds. Identical differences give a zero-width interval."""
    if len(a) != len(b):
        raise ValueError(f"paired scores need one value per seed each, got {len(a)} and {len(b)}.")
    if len(a) < 2:
        return None
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    mean = float(diff.mean())
    if np.allclose(diff, diff[0]):  # no spread: the t interval is undefined, the answer is not
        return Interval(mean, mean, mean)
    ci = stats.ttest_rel(a, b).confidence_interval(confidence_level=confidence)
    return Interval(mean, float(ci.low), float(ci.high))


def correct_matrix(strings: Sequence[str]) -> np.ndarray:
    """``[seeds, images]`` 0/1 from the runs' per-image correctness strings."""
    lengths = {len(s) for s in strings}
    if len(lengths) != 1:
        raise ValueError(f"every run must score the same test images, got lengths {lengths}.")
    return np.array([[c == "1" for c in s] for s in strings], dtype=float)


def paired_bootstrap_interval(
    a: Sequence[str],
    b: Sequence[str],
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """The bootstrap interval (percentile, resampling test images) of the difference in
    accuracy (%) between ``a`` and ``b``, averaged over seeds; ``a[i]``, ``b[i]``: the
    per-image correctness strings of the two methods' runs of one seed."""
    diff = (correct_matrix(a) - correct_matrix(b)).mean(axis=0) * 100  # per image
    mean = float(diff.mean())
    if np.all(diff == diff[0]):
        return Interval(mean, mean, mean)
    result = stats.bootstrap(
        (diff,),
        np.mean,
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    ci = result.confidence_interval
    return Interval(mean, float(ci.low), float(ci.high))


def verdict(*intervals: Optional[Interval]) -> str:
    """ "better" / "worse" when every interval excludes 0 on the same side (a None interval:
    not available, e.g. the bootstrap of a metric without per-image scores, is skipped; no
    seed interval at all is never distinguishable), else "not distinguishable"."""
    present = [i for i in intervals if i is not None]
    if not present or intervals[0] is None:
        return TIED
    signs = {i.sign for i in present}
    if signs == {1}:
        return BETTER
    if signs == {-1}:
        return WORSE
    return TIED


METRICS = {
    "knn": "kNN top-1",
    "linear": "linear top-1",
    "few_label": "few-label top-1",
    "few_label_augmented": "few-label + prior samples",
}
"""The compared metrics of a summary row (per-seed values under the key) and their names."""
BOOTSTRAPPED = ("knn", "linear")
"""Metrics with per-image correctness (``<metric>_correct``), so a bootstrap over test images."""


@dataclass(frozen=True)
class Comparison:
    """``method`` against ``other`` on ``metric`` within ``budget``: the paired intervals of
    the difference (method − other) over the ``seeds`` both have, and the verdict."""

    budget: str
    metric: str
    method: str
    other: str
    seeds: int
    over_seeds: Optional[Interval]
    over_images: Optional[Interval]
    verdict: str


def compare_rows(row: dict, other: dict, metric: str) -> Comparison:
    """Pairs ``row`` and ``other`` (summary rows, or a floor as a row) by seed on ``metric``:
    ``<metric>_by_seed`` {seed: value} and, for :data:`BOOTSTRAPPED`, ``<metric>_correct``
    {seed: correctness string}."""
    mine, theirs = row[f"{metric}_by_seed"], other[f"{metric}_by_seed"]
    seeds = [s for s in mine if s in theirs]
    over_seeds = paired_seed_interval([mine[s] for s in seeds], [theirs[s] for s in seeds])
    over_images = None
    if metric in BOOTSTRAPPED and seeds:
        a, b = row.get(f"{metric}_correct") or {}, other.get(f"{metric}_correct") or {}
        if all(s in a and s in b for s in seeds):
            over_images = paired_bootstrap_interval([a[s] for s in seeds], [b[s] for s in seeds])
    return Comparison(
        row["budget"],
        metric,
        row["method"],
        other["method"],
        len(seeds),
        over_seeds,
        over_images,
        verdict(over_seeds, over_images),
    )


def judge(rows: list[dict]) -> list[Comparison]:
    """Per budget and metric with more than one competitor (rows without ``failed``): every
    competitor against the best mean, and the best against every other. Sets
    ``<metric>_mark`` = "best" on a best row that is "better" than every other (the only
    rows a report bolds); returns the comparisons, the best's against the runner-up first."""
    comparisons = []
    for budget in dict.fromkeys(r["budget"] for r in rows):
        for metric in METRICS:
            group = [
                r
                for r in rows
                if r["budget"] == budget and r[f"{metric}_by_seed"] and not r.get("failed")
            ]
            for row in rows:
                row.setdefault(f"{metric}_mark", "")
            if len(group) < 2:
                continue
            group.sort(key=lambda r: -float(np.mean(list(r[f"{metric}_by_seed"].values()))))
            best, others = group[0], group[1:]
            against = [compare_rows(best, other, metric) for other in others]
            if all(c.verdict == BETTER for c in against):
                best[f"{metric}_mark"] = "best"
            comparisons.append(against[0])
            comparisons += [compare_rows(other, best, metric) for other in others]
    return comparisons
