"""Training the auto tier's model: an ordinal logistic regression, in pure Python.

The model is one linear score ``z = sum(w[f] * x[f])`` over the features of
``sidecar.core.routing.ask`` and two cut points on it: ``z >= cut[0]`` is standard or above,
``z >= cut[1]`` premium. It is fitted as two logistic regressions that share the weights ("all
thresholds": P(tier >= standard) = sigmoid(z - b1), P(tier >= premium) = sigmoid(z - b2)) with an
L2 penalty on the weights, by Newton's method with a backtracking line search: a fixed number of
iterations, no randomness, so the same rows always give the same weights.

Features are divided by their root mean square on the training rows before fitting (so one
penalty suits them all) and the weights are returned in the features' own units.

``margins`` then lower each cut by a number of logit units: when torn between two tiers, prefer
the higher one (a premium request sent to economy costs more than the reverse).

``cross_validate`` runs leave-one-group-out: train on every other batch, predict the held-out one
(the groups can be batches, or categories for a harder check of generalisation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from math import exp, log1p, sqrt, sumprod

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


def _softplus(t: float) -> float:
    return t + log1p(exp(-t)) if t > 0 else log1p(exp(t))


def _sigmoid(t: float) -> float:
    if t >= 0:
        return 1.0 / (1.0 + exp(-t))
    e = exp(t)
    return e / (1.0 + e)


def fit(rows: Sequence[Mapping[str, float]], labels: Sequence[int], names: Sequence[str], *,
        l2: float = 0.01, iterations: int = ITERATIONS, sample_weights: Sequence[float] | None = None
        ) -> Fitted:
    """Fit the model on ``rows`` (feature -> value) labelled 0, 1 or 2 (economy .. premium)."""
    n, d = len(rows), len(names)
    sw = list(sample_weights) if sample_weights is not None else [1.0] * n
    total = sum(sw)
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
    lam = l2 * total  # the penalty is l2/2 * |w|^2 per unit of sample weight

    def loss(w: list[float], b: list[float]) -> float:
        value = 0.5 * lam * sumprod(w, w)
        for i, x in enumerate(xrows):
            z = sumprod(w, x)
            for k in levels:
                t = z - b[k]
                value += sw[i] * _softplus(-t if ge[k][i] else t)
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
                p = _sigmoid(zs[i] - b[k])
                g = sw[i] * (p - ge[k][i])
                h = sw[i] * p * (1 - p)
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
                  tuple(b), tuple(scale), done, current / total)


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
             l2: float, iterations: int = ITERATIONS,
             sample_weights: Sequence[float] | None = None) -> tuple[Fitted, Fitted]:
    """The model's two logistic regressions: P(tier >= standard) and P(tier = premium)."""
    a = fit(rows, [int(y >= 1) for y in labels], names, l2=l2, iterations=iterations,
            sample_weights=sample_weights)
    b = fit(rows, [int(y >= 2) for y in labels], names, l2=l2, iterations=iterations,
            sample_weights=sample_weights)
    return a, b


def decide(standard: float, premium: float, margins: tuple[float, float] = (0.0, 0.0)) -> int:
    """The tier (0, 1, 2) from the two logits (z - cut): premium when the premium logit is above
    -margin[1], else standard when the standard logit is above -margin[0], else economy."""
    return 2 if premium >= -margins[1] else 1 if standard >= -margins[0] else 0


@dataclass(frozen=True, slots=True)
class Fold:
    group: str
    ids: tuple[int, ...]  # indexes of the tested rows
    labels: tuple[int, ...]
    logits: tuple[tuple[float, float], ...]  # per tested row: (standard, premium) z - cut

    def chosen(self, margins: tuple[float, float] = (0.0, 0.0)) -> list[int]:
        return [decide(a, b, margins) for a, b in self.logits]


def cross_validate(rows: Sequence[Mapping[str, float]], labels: Sequence[int], groups: Sequence[str],
                   names: Sequence[str], *, l2: float, iterations: int = ITERATIONS,
                   always: Sequence[bool] | None = None,
                   sample_weights: Sequence[float] | None = None) -> list[Fold]:
    """Leave one group out: for each group (in order of first appearance), fit on the others
    (and on the rows marked ``always``, which are never tested) and score the group."""
    keep = list(always) if always is not None else [False] * len(rows)
    sw = list(sample_weights) if sample_weights is not None else [1.0] * len(rows)
    folds = []
    for g in dict.fromkeys(gr for gr, a in zip(groups, keep, strict=True) if not a):
        train = [i for i, gr in enumerate(groups) if gr != g or keep[i]]
        test = [i for i, gr in enumerate(groups) if gr == g and not keep[i]]
        a, b = fit_pair([rows[i] for i in train], [labels[i] for i in train], names, l2=l2,
                        iterations=iterations, sample_weights=[sw[i] for i in train])
        folds.append(Fold(g, tuple(test), tuple(labels[i] for i in test),
                          tuple((a.z(rows[i]) - a.cuts[0], b.z(rows[i]) - b.cuts[0])
                                for i in test)))
    return folds


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

L2_GRID = (0.003, 0.01, 0.03, 0.1)
MARGIN_GRID = ((0.0, 0.0), (0.25, 0.0), (0.0, 0.25), (0.25, 0.25), (0.5, 0.25), (0.5, 0.5))
MAX_PREMIUM_TO_ECONOMY = 0.02  # under cross-validation, to keep a margin below the bar of 3%
POINTS_PER_LOGIT = 6.25  # 25 points (from standard at 35 to premium at 60) span four logits


@dataclass(frozen=True, slots=True)
class Trial:
    l2: float
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
           l2_grid: Sequence[float] = L2_GRID,
           margin_grid: Sequence[tuple[float, float]] = MARGIN_GRID) -> list[Trial]:
    """Leave-one-group-out results of every (l2, margins) of the grids."""
    out = []
    for l2 in l2_grid:
        folds = cross_validate(rows, labels, groups, names, l2=l2, always=always)
        for m in margin_grid:
            out.append(Trial(l2, m, pooled(folds, m),
                             {f.group: summary(pooled([f], m))[0] for f in folds}))
    return out


def choose(results: Sequence[Trial]) -> Trial:
    """The best exact accuracy among the trials whose premium -> economy rate is at most
    MAX_PREMIUM_TO_ECONOMY (all trials if none is); ties go to the larger margins (prefer the
    higher tier), then to the larger l2 (the simpler model)."""
    safe = [t for t in results if t.premium_to_economy <= MAX_PREMIUM_TO_ECONOMY] or list(results)
    return max(safe, key=lambda t: (round(t.exact, 6), sum(t.margins), t.l2))


def build(rows: Sequence[Mapping[str, float]], labels: Sequence[int], names: Sequence[str], *,
          l2: float, margins: tuple[float, float]) -> dict[str, object]:
    """Fit on all rows and express the two scores in points: ``base`` plus points per unit of
    each feature, 35 on the standard score where P(>= standard) = sigmoid(-margins[0]), 60 on the
    premium score where P(premium) = sigmoid(-margins[1])."""
    a, b = fit_pair(rows, labels, names, l2=l2)
    k = POINTS_PER_LOGIT
    return {
        "features": list(names),
        "standard": {"base": round(35.0 + k * (margins[0] - a.cuts[0]), 2),
                     "points": [round(k * w, 3) for w in a.weights]},
        "premium": {"base": round(60.0 + k * (margins[1] - b.cuts[0]), 2),
                    "points": [round(k * w, 3) for w in b.weights]},
        "fit": {"l2": l2, "margins": list(margins), "points_per_logit": k,
                "newton_steps": [a.iterations, b.iterations], "loss": [_r(a.loss), _r(b.loss)],
                "rms": {n: _r(s) for n, s in zip(names, a.scale, strict=True)}},
    }


def _r(x: float) -> float:
    return float(f"{x:.6g}")
