"""Training the auto tier's model, in pure Python: choosing it by cross-validation and building
the model file.

The shipped model is two additive logistic models (``sidecar.core.routing.boost``): P(tier >=
standard) and P(tier = premium), each a sum of step functions of one feature, fitted by boosting
stumps; the number of boosting rounds and the margins are chosen by leave-one-batch-out
cross-validation (``trials``, ``choose``) and ``build`` writes the chosen model as points.

For comparison, the previous rounds' linear model (``fit``, ``fit_pair``, ``linear``): logistic
regressions over the same features, ``z = sum(w[f] * x[f])`` with one cut point per level (``fit``
with labels 0..2 is the ordinal "all thresholds" model sharing the weights), an L2 penalty,
fitted by Newton's method with a backtracking line search on features divided by their root
mean square. Both fits are deterministic: the same rows always give the same model.

``margins`` then lower each cut by a number of logit units: when torn between two tiers, prefer
the higher one (a premium request sent to economy costs more than the reverse).

``cross_validate`` runs leave-one-group-out: train on every other batch, predict the held-out one
(the groups can be batches, or categories for a harder check of generalisation).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from math import exp, log1p, sqrt, sumprod
from typing import Protocol

from sidecar.core.routing.boost import RATE, Additive, boost, sigmoid

TIERS = ("economy", "standard", "premium")
ITERATIONS = 25  # Newton steps at most (it stops earlier once the loss no longer improves)


@dataclass(frozen=True, slots=True)
class Fitted:
    names: tuple[str, ...]
    weights: tuple[float, ...]  # per unit of each feature
    cuts: tuple[float, ...]  # the fitted thresholds, one per level above economy
    scale: tuple[float, ...]  # the root mean square of each feature on the training rows
    iterations: int
    loss: float

    def z(self, x: Mapping[str, float]) -> float:
        return sum(w * x.get(n, 0.0) for n, w in zip(self.names, self.weights, strict=True))

    def logit(self, x: Mapping[str, float]) -> float:
        """The logit of a binary fit (one cut): z - cut."""
        return self.z(x) - self.cuts[0]


def _softplus(t: float) -> float:
    return t + log1p(exp(-t)) if t > 0 else log1p(exp(t))



def fit(rows: Sequence[Mapping[str, float]], labels: Sequence[int], names: Sequence[str], *,
        l2: float = 0.01, iterations: int = ITERATIONS) -> Fitted:
    """Fit the model on ``rows`` (feature -> value) labelled 0, 1 or 2 (economy .. premium)."""
    n, d = len(rows), len(names)
    scale = []
    cols: list[list[float]] = []
    for name in names:
        raw = [r.get(name, 0.0) for r in rows]
        rms = sqrt(sumprod(raw, raw) / n) or 1.0
        scale.append(rms)
        cols.append([v / rms for v in raw])
    xrows = [list(t) for t in zip(*cols, strict=True)] if d else [[] for _ in range(n)]
    levels = tuple(range(max(labels, default=1) or 1))  # one threshold per level above 0
    ge = [[1.0 if y > k else 0.0 for y in labels] for k in levels]
    lam = l2 * n  # the penalty is l2/2 * |w|^2 per row

    def loss(w: list[float], b: list[float]) -> float:
        value = 0.5 * lam * sumprod(w, w)
        for i, x in enumerate(xrows):
            z = sumprod(w, x)
            for k in levels:
                t = z - b[k]
                value += _softplus(-t if ge[k][i] else t)
        return value

    w, b = [0.0] * d, [k - 0.5 * (len(levels) - 1) for k in levels]
    current = loss(w, b)
    done = 0
    for _ in range(iterations):
        done += 1
        zs = [sumprod(w, x) for x in xrows]
        gz = [0.0] * n  # d loss / d z_i
        hz = [0.0] * n  # d2 loss / d z_i^2
        gb, hb = [0.0 for _ in levels], [0.0 for _ in levels]
        hzb = [[0.0] * n for _ in levels]
        for k in levels:
            for i in range(n):
                p = sigmoid(zs[i] - b[k])
                g = p - ge[k][i]
                h = p * (1 - p)
                gz[i] += g
                hz[i] += h
                gb[k] -= g
                hb[k] += h
                hzb[k][i] = h
        grad = [sumprod(gz, col) + lam * wj for col, wj in zip(cols, w, strict=True)] + gb
        m = d + len(levels)
        hess = [[0.0] * m for _ in range(m)]
        for a in range(d):
            ha = [h * v for h, v in zip(hz, cols[a], strict=True)]
            for c in range(a, d):
                hess[a][c] = hess[c][a] = sumprod(ha, cols[c])
            hess[a][a] += lam
            for k in levels:
                hess[a][d + k] = hess[d + k][a] = -sumprod(hzb[k], cols[a])
        for k in levels:
            hess[d + k][d + k] = hb[k] + 1e-9
        step = _solve(hess, grad)
        t = 1.0
        while True:
            nw = [wj - t * s for wj, s in zip(w, step[:d], strict=True)]
            nb = [bk - t * step[d + k] for k, bk in enumerate(b)]
            new = loss(nw, nb)
            if new <= current or t < 1e-6:
                break
            t /= 2
        improvement = current - new
        w, b, current = nw, nb, new
        if improvement < 1e-10 * max(1.0, abs(current)):
            break
    return Fitted(tuple(names), tuple(wj / s for wj, s in zip(w, scale, strict=True)),
                  tuple(b), tuple(scale), done, current / n)


def _solve(a: list[list[float]], g: list[float]) -> list[float]:
    """Solve ``a x = g`` for a symmetric positive definite ``a`` (Cholesky)."""
    m = len(g)
    low = [[0.0] * m for _ in range(m)]
    for i in range(m):
        for j in range(i + 1):
            s = a[i][j] - sumprod(low[i][:j], low[j][:j])
            if i == j:
                low[i][i] = sqrt(s) if s > 1e-12 else 1e-6
            else:
                low[i][j] = s / low[j][j]
    y = [0.0] * m
    for i in range(m):
        y[i] = (g[i] - sumprod(low[i][:i], y[:i])) / low[i][i]
    x = [0.0] * m
    for i in reversed(range(m)):
        x[i] = (y[i] - sum(low[j][i] * x[j] for j in range(i + 1, m))) / low[i][i]
    return x


def fit_pair(rows: Sequence[Mapping[str, float]], labels: Sequence[int], names: Sequence[str], *,
             l2: float, iterations: int = ITERATIONS) -> tuple[Fitted, Fitted]:
    """The linear model's two logistic regressions: P(tier >= standard) and P(tier = premium)."""
    a = fit(rows, [int(y >= 1) for y in labels], names, l2=l2, iterations=iterations)
    b = fit(rows, [int(y >= 2) for y in labels], names, l2=l2, iterations=iterations)
    return a, b


class Scorer(Protocol):
    def logit(self, x: Mapping[str, float]) -> float: ...


# fit on (rows, labels 0..2, names): one (standard, premium) pair per setting of a grid
PairFitter = Callable[[Sequence[Mapping[str, float]], Sequence[int], Sequence[str]],
                      list[tuple[Scorer, Scorer]]]


def additive(rounds: Sequence[int]) -> PairFitter:
    """The additive model after each of ``rounds`` boosting rounds (one fit per score)."""
    def fitter(rows: Sequence[Mapping[str, float]], labels: Sequence[int],
               names: Sequence[str]) -> list[tuple[Scorer, Scorer]]:
        a = boost(rows, [int(y >= 1) for y in labels], names, rounds=max(rounds), checkpoints=rounds)
        b = boost(rows, [int(y >= 2) for y in labels], names, rounds=max(rounds), checkpoints=rounds)
        return list(zip(a, b, strict=True))
    return fitter


def linear(l2_grid: Sequence[float]) -> PairFitter:
    """The linear model, one fit per regularisation of ``l2_grid``."""
    def fitter(rows: Sequence[Mapping[str, float]], labels: Sequence[int],
               names: Sequence[str]) -> list[tuple[Scorer, Scorer]]:
        return [fit_pair(rows, labels, names, l2=l2) for l2 in l2_grid]
    return fitter


def decide(standard: float, premium: float, margins: tuple[float, float] = (0.0, 0.0)) -> int:
    """The tier (0, 1, 2) from the two logits: premium when the premium logit is above
    -margin[1], else standard when the standard logit is above -margin[0], else economy."""
    return 2 if premium >= -margins[1] else 1 if standard >= -margins[0] else 0


@dataclass(frozen=True, slots=True)
class Fold:
    group: str
    ids: tuple[int, ...]  # indexes of the tested rows
    labels: tuple[int, ...]
    logits: tuple[tuple[float, float], ...]  # per tested row: (standard, premium) logits

    def chosen(self, margins: tuple[float, float] = (0.0, 0.0)) -> list[int]:
        return [decide(a, b, margins) for a, b in self.logits]


def cross_validate(rows: Sequence[Mapping[str, float]], labels: Sequence[int], groups: Sequence[str],
                   names: Sequence[str], fitter: PairFitter, *,
                   always: Sequence[bool] | None = None) -> list[list[Fold]]:
    """Leave one group out: for each group (in order of first appearance), fit on the others
    (and on the rows marked ``always``, which are never tested) and score the group. One list of
    folds per setting of the fitter's grid."""
    keep = list(always) if always is not None else [False] * len(rows)
    out: list[list[Fold]] = []
    for g in dict.fromkeys(gr for gr, a in zip(groups, keep, strict=True) if not a):
        train = [i for i, gr in enumerate(groups) if gr != g or keep[i]]
        test = [i for i, gr in enumerate(groups) if gr == g and not keep[i]]
        pairs = fitter([rows[i] for i in train], [labels[i] for i in train], names)
        while len(out) < len(pairs):
            out.append([])
        for folds, (a, b) in zip(out, pairs, strict=True):
            folds.append(Fold(g, tuple(test), tuple(labels[i] for i in test),
                              tuple((a.logit(rows[i]), b.logit(rows[i])) for i in test)))
    return out


def pooled(folds: Sequence[Fold], margins: tuple[float, float] = (0.0, 0.0)) -> list[list[int]]:
    """The confusion matrix of all folds together."""
    matrix = [[0, 0, 0] for _ in TIERS]
    for f in folds:
        for y, c in zip(f.labels, f.chosen(margins), strict=True):
            matrix[y][c] += 1
    return matrix


def confusion(labels: Sequence[int], chosen: Sequence[int]) -> list[list[int]]:
    matrix = [[0, 0, 0] for _ in TIERS]
    for y, c in zip(labels, chosen, strict=True):
        matrix[y][c] += 1
    return matrix


def summary(matrix: list[list[int]]) -> tuple[float, float]:
    """(exact accuracy, share of premium-labelled sent to economy) of a confusion matrix."""
    total = sum(map(sum, matrix))
    exact = sum(matrix[i][i] for i in range(3)) / total if total else 0.0
    premium = sum(matrix[2])
    return exact, (matrix[2][0] / premium if premium else 0.0)


# --- choosing by cross-validation and building the model file -------------------------------------

ROUNDS_GRID = (100, 200, 300, 400, 600)
MARGIN_GRID = tuple((a, b) for a in (0.0, 0.25, 0.5) for b in (0.0, 0.25, 0.5, 0.75))
# under cross-validation. On the untouched batches the rate came out two to three times the
# cross-validated one (round 2: 1.3% -> 2.3%; round 3: 2.0% -> 6.0%), so the bound is half the
# bar of 3% (a third would cost about three points of exact accuracy on the newest batches' folds)
MAX_PREMIUM_TO_ECONOMY = 0.015
POINTS_PER_LOGIT = 6.25  # 25 points (from standard at 35 to premium at 60) span four logits


@dataclass(frozen=True, slots=True)
class Trial:
    rounds: int
    margins: tuple[float, float]
    matrix: list[list[int]]  # pooled over the folds
    per_group: dict[str, float]  # exact accuracy of each held-out group

    @property
    def exact(self) -> float:
        return summary(self.matrix)[0]

    @property
    def premium_to_economy(self) -> float:
        return summary(self.matrix)[1]


def trials(rows: Sequence[Mapping[str, float]], labels: Sequence[int], groups: Sequence[str],
           names: Sequence[str], *, always: Sequence[bool] | None = None,
           rounds_grid: Sequence[int] = ROUNDS_GRID,
           margin_grid: Sequence[tuple[float, float]] = MARGIN_GRID) -> list[Trial]:
    """Leave-one-group-out results of every (rounds, margins) of the grids."""
    out = []
    settings = cross_validate(rows, labels, groups, names, additive(rounds_grid), always=always)
    for rounds, folds in zip(rounds_grid, settings, strict=True):
        for m in margin_grid:
            out.append(Trial(rounds, m, pooled(folds, m),
                             {f.group: summary(pooled([f], m))[0] for f in folds}))
    return out


def choose(results: Sequence[Trial]) -> Trial:
    """The best exact accuracy among the trials whose premium -> economy rate is at most
    MAX_PREMIUM_TO_ECONOMY (all trials if none is); ties go to the larger margins (prefer the
    higher tier), then to fewer rounds (the simpler model)."""
    safe = [t for t in results if t.premium_to_economy <= MAX_PREMIUM_TO_ECONOMY] or list(results)
    return max(safe, key=lambda t: (round(t.exact, 6), sum(t.margins), -t.rounds))


def build(rows: Sequence[Mapping[str, float]], labels: Sequence[int], names: Sequence[str], *,
          rounds: int, margins: tuple[float, float]) -> dict[str, object]:
    """Fit on all rows and express the two scores in points: a ``base`` plus, per feature, the
    points of each interval of its values (``cuts``), 35 on the standard score where P(>=
    standard) = sigmoid(-margins[0]), 60 on the premium score where P(premium) =
    sigmoid(-margins[1])."""
    (a, b), = additive((rounds,))(rows, labels, names)
    assert isinstance(a, Additive) and isinstance(b, Additive)
    k = POINTS_PER_LOGIT

    def points(m: Additive, at: float, margin: float) -> dict[str, object]:
        return {"base": round(at + k * (margin + m.base), 2),
                "terms": {n: {"cuts": [_r(c) for c in s.cuts],
                              "points": [round(k * v, 2) for v in s.values]}
                          for n, s in m.terms.items()}}

    used = [n for n in names if n in a.terms or n in b.terms]
    return {
        "features": used,
        "standard": points(a, 35.0, margins[0]),
        "premium": points(b, 60.0, margins[1]),
        "fit": {"model": "additive: boosted stumps", "rounds": rounds, "rate": RATE,
                "margins": list(margins), "points_per_logit": k},
    }


def _r(x: float) -> float:
    return float(f"{x:.6g}")
