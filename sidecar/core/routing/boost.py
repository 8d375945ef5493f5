"""An additive model of step functions, fitted by gradient boosting of stumps, in pure Python.

The auto tier's two scores are logistic regressions whose terms are step functions of one
feature each (a generalised additive model, as in explainable boosting machines): the logit is
``base + sum(f_name(x[name]))``, so every feature's contribution to a decision is a number that
``explain`` can show, and a feature may count for more at first and then level off (the length
of an ask, the number of tool rounds) where a linear weight could not.

``boost`` fits it: ``rounds`` steps of Newton-boosting, each adding the one split of one feature
(a stump) that most lowers the logistic loss, shrunk by ``rate``. Splits are between the
distinct values a feature takes on the training rows (at most ``MAX_CUTS`` per feature, at
quantiles), a side needs ``MIN_LEAF`` rows, and the leaf values are L2-regularised (``LAMBDA``).
No randomness: the same rows always give the same model. Features are zero on most rows, so
each round visits only the rows where a feature is not.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from math import exp, log

MAX_CUTS = 12
MIN_LEAF = 8
LAMBDA = 1.0
RATE = 0.2


@dataclass(frozen=True, slots=True)
class Steps:
    """One feature's term: ``values[i]`` on the interval ``cuts[i-1] < x <= cuts[i]``."""

    cuts: tuple[float, ...]
    values: tuple[float, ...]  # len(cuts) + 1

    def at(self, x: float) -> float:
        return self.values[bisect_left(self.cuts, x)]


@dataclass(frozen=True, slots=True)
class Additive:
    base: float  # the logit of a row whose features are all zero
    terms: Mapping[str, Steps]  # each term is 0 at x = 0

    def logit(self, x: Mapping[str, float]) -> float:
        return self.base + sum(s.at(x.get(n, 0.0)) for n, s in self.terms.items())

    def contributions(self, x: Mapping[str, float]) -> dict[str, float]:
        return {n: v for n, s in self.terms.items() if (v := s.at(x.get(n, 0.0)))}


def sigmoid(t: float) -> float:
    if t >= 0:
        return 1.0 / (1.0 + exp(-t))
    e = exp(t)
    return e / (1.0 + e)


def _cut_points(values: Sequence[float]) -> list[float]:
    distinct = sorted(set(values))
    mids = [(a + b) / 2 for a, b in zip(distinct, distinct[1:], strict=False)]
    if len(mids) > MAX_CUTS:
        mids = [mids[round(k * (len(mids) - 1) / (MAX_CUTS - 1))] for k in range(MAX_CUTS)]
    return sorted(set(mids))


def boost(rows: Sequence[Mapping[str, float]], labels: Sequence[int], names: Sequence[str], *,
          rounds: int, rate: float = RATE, checkpoints: Sequence[int] = ()) -> list[Additive]:
    """Fit ``P(label = 1)`` on ``rows``; return the model after each of ``checkpoints`` (rounds
    counts, ascending) and after ``rounds``."""
    n = len(rows)
    positive = sum(labels)
    f0 = log((positive + 0.5) / (n - positive + 0.5))
    cuts: dict[str, list[float]] = {}
    sparse: dict[str, list[tuple[int, int]]] = {}  # feature -> (row, bin) where x != 0
    zero_bin: dict[str, int] = {}
    for name in names:
        column = [r.get(name, 0.0) for r in rows]
        points = _cut_points(column)
        if not points:
            continue
        cuts[name] = points
        zero_bin[name] = bisect_left(points, 0.0)
        sparse[name] = [(i, bisect_left(points, v)) for i, v in enumerate(column) if v]
    bins = {name: [zero_bin[name]] * n for name in cuts}
    for name, pairs in sparse.items():
        for i, b in pairs:
            bins[name][i] = b
    step_sums: dict[str, list[float]] = {name: [0.0] * (len(c) + 1) for name, c in cuts.items()}
    f = [f0] * n
    out: list[Additive] = []
    marks = sorted({*(c for c in checkpoints if 0 < c < rounds), rounds})
    for r in range(1, rounds + 1):
        p = [sigmoid(v) for v in f]
        g = [pi - yi for pi, yi in zip(p, labels, strict=True)]
        h = [max(pi * (1 - pi), 1e-6) for pi in p]
        gt, ht = sum(g), sum(h)
        best: tuple[float, str, int, float, float] | None = None
        for name, points in cuts.items():
            k = len(points) + 1
            gs, hs, cs = [0.0] * k, [0.0] * k, [0] * k
            for i, b in sparse[name]:
                gs[b] += g[i]
                hs[b] += h[i]
                cs[b] += 1
            z = zero_bin[name]
            gs[z] += gt - sum(gs)
            hs[z] += ht - sum(hs)
            cs[z] += n - sum(cs)
            gl = hl = 0.0
            cl = 0
            for j in range(k - 1):  # split after bin j: x <= points[j] goes left
                gl += gs[j]
                hl += hs[j]
                cl += cs[j]
                if cl < MIN_LEAF or n - cl < MIN_LEAF:
                    continue
                gr, hr = gt - gl, ht - hl
                gain = gl * gl / (hl + LAMBDA) + gr * gr / (hr + LAMBDA) - gt * gt / (ht + LAMBDA)
                if best is None or gain > best[0] + 1e-12:
                    best = (gain, name, j, -rate * gl / (hl + LAMBDA), -rate * gr / (hr + LAMBDA))
        if best is None:
            break
        _, name, j, left, right = best
        sums = step_sums[name]
        for b in range(len(sums)):
            sums[b] += left if b <= j else right
        row_bins = bins[name]
        for i in range(n):
            f[i] += left if row_bins[i] <= j else right
        if r in marks:
            out.append(_additive(f0, cuts, zero_bin, step_sums))
    while len(out) < len(marks):  # stopped early: the later checkpoints are the last model
        out.append(_additive(f0, cuts, zero_bin, step_sums))
    return out


def _additive(f0: float, cuts: Mapping[str, list[float]], zero_bin: Mapping[str, int],
              sums: Mapping[str, list[float]]) -> Additive:
    """The model with each term shifted to be 0 at x = 0 (the shifts go into the base)."""
    base = f0
    terms = {}
    for name, values in sums.items():
        if not any(values):
            continue
        at_zero = values[zero_bin[name]]
        base += at_zero
        kept_cuts, kept = [], [values[0] - at_zero]
        for cut, v in zip(cuts[name], values[1:], strict=True):
            if v - at_zero != kept[-1]:  # merge neighbouring intervals of one value
                kept_cuts.append(cut)
                kept.append(v - at_zero)
        terms[name] = Steps(tuple(kept_cuts), tuple(kept))
    return Additive(base, terms)
