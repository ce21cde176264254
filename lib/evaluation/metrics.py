"""Metrics and the analysis statistics of the paper.

* ROUGE-1 / ROUGE-L F-measure with LaMP's conventions (Salemi et al. 2023, "LaMP: When Large
  Language Models Meet Personalization"): the official evaluation calls HF ``evaluate``'s rouge,
  a wrapper of Google's ``rouge-score`` (Lin 2004), on stripped predictions and references,
  without a stemmer. ``evaluate`` aggregates with a bootstrap median; we report the plain mean
  over examples (the quantity that median estimates) and a separate seeded bootstrap CI.
* Kendall's tau-b (Kendall 1945; scipy) between RM accuracy and policy accuracy (or ROUGE)
  across reward models, with a percentile bootstrap CI over models (Efron & Tibshirani 1993):
  the paper reports tau = 0.08-0.31 between RM accuracy and policy accuracy.
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import stats

from ..core.params import check_values
from ..core.stats import CI_RULES, bootstrap_ci  # noqa: F401  (re-exported: metrics.bootstrap_ci)

ROUGE_TYPES = ("rouge1", "rougeL")


@lru_cache(maxsize=4)
def _scorer(use_stemmer: bool):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)


def rouge_scores(predictions, references, use_stemmer: bool = False) -> pd.DataFrame:
    """Per-example ROUGE-1 and ROUGE-L F-measure (columns ``rouge1``, ``rougeL``).

    Both sides are stripped (LaMP); ``None`` or a length mismatch is an error, never a silent 0.
    """
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"rouge: {len(predictions)} predictions but {len(references)} references")
    rows = []
    for i, (p, r) in enumerate(zip(predictions, references)):
        if not isinstance(p, str) or not isinstance(r, str):
            raise TypeError(f"rouge: example {i}: prediction and reference must be str, "
                            f"got {type(p).__name__} and {type(r).__name__}")
        s = _scorer(use_stemmer).score(r.strip(), p.strip())  # score(target, prediction)
        rows.append({t: float(s[t].fmeasure) for t in ROUGE_TYPES})
    return pd.DataFrame(rows, columns=list(ROUGE_TYPES))


def rouge(predictions, references, use_stemmer: bool = False) -> dict[str, float]:
    """Mean ROUGE-1 / ROUGE-L F-measure over examples (LaMP's reported numbers)."""
    df = rouge_scores(predictions, references, use_stemmer)
    if df.empty:
        raise ValueError("rouge: no examples")
    return {t: float(df[t].mean()) for t in ROUGE_TYPES}


def kendall_tau(x, y) -> tuple[float, float]:
    """Kendall tau-b and its two-sided p-value (scipy); NaN when either side is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) != len(y):
        raise ValueError(f"kendall_tau: {len(x)} x values but {len(y)} y values")
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    r = stats.kendalltau(x, y, variant="b")
    return float(r.statistic), float(r.pvalue)


def tau_b_resampled(x, y, idx) -> np.ndarray:
    """Kendall tau-b of ``(x[i], y[i])`` for every row ``i`` of the index array ``idx`` ``[R, n]``, at once.

    With ``M = sign(x_a - x_b) sign(y_a - y_b)`` and ``c`` the counts of each item in a resample,
    ``n_c - n_d = c'Mc / 2`` and the pairs untied in x are ``c'|sign(x_a - x_b)|c / 2`` (a repeated
    item ties with itself); tau-b = (n_c - n_d) / sqrt(untied_x * untied_y), as scipy's variant "b".
    NaN where a resample is constant on one side.
    """
    x, y, idx = np.asarray(x, dtype=float), np.asarray(y, dtype=float), np.asarray(idx)
    sx, sy = np.sign(x[:, None] - x[None]), np.sign(y[:, None] - y[None])
    c = np.zeros((len(idx), len(x)))
    np.add.at(c, (np.arange(len(idx))[:, None], idx), 1.0)
    quad = lambda m: np.einsum("ri,ij,rj->r", c, m, c)  # noqa: E731
    s, nx, ny = quad(sx * sy), quad(np.abs(sx)), quad(np.abs(sy))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((nx > 0) & (ny > 0), s / np.sqrt(nx * ny), np.nan)


def _tau_ci(out: dict, taus: np.ndarray, alpha: float) -> dict:
    """Fill ``out`` with the percentile CI of the defined resampled taus and how many were undefined."""
    ok = taus[~np.isnan(taus)]
    out["n_degenerate"] = int(len(taus) - len(ok))
    if len(ok):
        out["ci_lo"], out["ci_hi"] = float(np.quantile(ok, alpha / 2)), float(np.quantile(ok, 1 - alpha / 2))
    return out


def kendall_tau_ci(x, y, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> dict:
    """tau-b with a percentile bootstrap CI, resampling models (pairs (x_i, y_i)) with replacement.

    All ``n_boot`` resamples are evaluated at once (:func:`tau_b_resampled`). Resamples where one
    side is constant have no tau; they are dropped and counted in ``n_degenerate`` (reported, not
    hidden). Returns tau, p, ci_lo, ci_hi, n, n_degenerate.
    """
    check_values("kendall_tau_ci", CI_RULES, {"n_boot": n_boot, "alpha": alpha, "seed": seed})
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    tau, p = kendall_tau(x, y)
    out = {"tau": tau, "p": p, "ci_lo": float("nan"), "ci_hi": float("nan"), "n": len(x), "n_degenerate": 0}
    if np.isnan(tau):
        return out
    rng = np.random.default_rng(seed)
    taus = tau_b_resampled(x, y, rng.integers(0, len(x), size=(n_boot, len(x))))
    return _tau_ci(out, taus, alpha)


def tau_table(df: pd.DataFrame, x: str, y: str, by=("task",), n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Kendall tau-b between columns ``x`` and ``y`` across the rows (reward models) of each group.

    One row per group of ``by`` with n (models), tau, p, bootstrap CI. Use it for RM accuracy vs
    policy accuracy (per task and policy size) and RM accuracy vs ROUGE (the decoupling).
    """
    missing = [c for c in (x, y, *by) if c not in df.columns]
    if missing:
        raise KeyError(f"tau_table: columns {missing} not in {list(df.columns)}")
    rows = []
    for key, g in df.groupby(list(by), sort=True, dropna=False):
        g = g.dropna(subset=[x, y])
        key = key if isinstance(key, tuple) else (key,)
        if len(g) < 3:
            warnings.warn(f"tau_table: group {dict(zip(by, key))} has {len(g)} models; tau needs >= 3",
                          stacklevel=2)
        r = kendall_tau_ci(g[x], g[y], n_boot=n_boot, seed=seed)
        rows.append({**dict(zip(by, key)), "x": x, "y": y, **r})
    return pd.DataFrame(rows)


def tau_b_rows(a, b) -> np.ndarray:
    """Kendall tau-b of each row pair ``(a[r], b[r])`` of two ``[R, n]`` arrays (NaN where a row is constant).

    Counts over all ``i < j``: ``n_c - n_d = sum sign(a_i - a_j) sign(b_i - b_j)``; the pairs untied in
    ``a`` and in ``b`` form the tau-b denominator, as scipy's variant "b" (a repeated item ties with itself).
    """
    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    sa, sb = np.sign(a[:, :, None] - a[:, None]), np.sign(b[:, :, None] - b[:, None])
    s, na, nb = (sa * sb).sum((1, 2)), np.abs(sa).sum((1, 2)), np.abs(sb).sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((na > 0) & (nb > 0), s / np.sqrt(na * nb), np.nan)


def kendall_tau_pairs_ci(x_pairs, y_pairs, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
                         chunk: int = 250) -> dict:
    """tau-b between two per-model accuracies, with a bootstrap that resamples models *and* test pairs.

    ``x_pairs``, ``y_pairs``: ``[M, P]`` per-pair outcomes (1 correct, 0.5 tie, 0 wrong) of M models on
    the same P pairs (e.g. RM correctness and policy correctness). The point estimate is tau-b of the
    row means. Each resample draws P pairs and M models with replacement and recomputes *both*
    accuracies before tau, so the CI carries the pair noise that dominates at small P (Efron &
    Tibshirani 1993, two-stage resampling). Resamples with a constant side are dropped and counted in
    ``n_degenerate``. Returns tau, p (scipy, models only), ci_lo, ci_hi, n (models), n_pairs, n_degenerate.
    """
    check_values("kendall_tau_pairs_ci", CI_RULES, {"n_boot": n_boot, "alpha": alpha, "seed": seed})
    X, Y = np.asarray(x_pairs, dtype=float), np.asarray(y_pairs, dtype=float)
    if X.shape != Y.shape or X.ndim != 2:
        raise ValueError(f"kendall_tau_pairs_ci: need two [models, pairs] arrays of one shape, got {X.shape} and {Y.shape}")
    M, P = X.shape
    tau, p = kendall_tau(X.mean(1), Y.mean(1)) if P else (float("nan"), float("nan"))
    out = {"tau": tau, "p": p, "ci_lo": float("nan"), "ci_hi": float("nan"), "n": M, "n_pairs": P, "n_degenerate": 0}
    if np.isnan(tau):
        return out
    rng = np.random.default_rng(seed)
    taus = []
    for s in range(0, n_boot, chunk):
        r = min(chunk, n_boot - s)
        counts = np.zeros((r, P))
        np.add.at(counts, (np.arange(r)[:, None], rng.integers(0, P, size=(r, P))), 1.0)
        xb, yb = counts @ X.T / P, counts @ Y.T / P  # [r, M] accuracies on the resampled pairs
        m = rng.integers(0, M, size=(r, M))
        taus.append(tau_b_rows(np.take_along_axis(xb, m, 1), np.take_along_axis(yb, m, 1)))
    taus = np.concatenate(taus)
    return _tau_ci(out, taus, alpha)
