"""Statistics of the tau cells a reviewer accepts: minimum sizes, a hierarchical bootstrap, an exact permutation
p-value, and a paired bootstrap of a difference between two systems on the same items.

* Reward models are not independent (6 methods x seeds x prefix variants) and pairs are not independent (several
  per user): :func:`kendall_tau_hier_ci` resamples both axes in two stages (Davison & Hinkley 1997, ch. 3.8):
  groups (methods; users) with replacement, then members within each drawn group with replacement, and
  recomputes both accuracies before tau-b.
* A cell below :data:`MIN_SIZES` has no tau (:func:`size_status`): a tau-b over fewer than 5 items takes a handful
  of values; fewer than 20 pairs give accuracies in steps of 0.05 or more, with CIs wider than any effect; fewer
  than 4 users make a user-level bootstrap meaningless.
* A CI whose resamples were too often constant on one side (more than :data:`MAX_DEGENERATE_FRAC`) is refused:
  the resamples that remain are a biased subset.
* With a handful of items (the six methods) a percentile bootstrap is meaningless; :func:`exact_permutation_p`
  enumerates every pairing (scipy.stats.permutation_test).
"""
from __future__ import annotations

import numpy as np
from scipy import stats

from ..core.params import check_values
from ..core.stats import CI_RULES
from .metrics import tau_b_rows

MIN_SIZES = {"models": 5, "pairs": 20, "users": 4}
MAX_DEGENERATE_FRAC = 0.05
MAX_EXACT_N = 9  # 9! = 362880 pairings; beyond that an exact test is too slow to be the default


def size_status(n_models: int, n_pairs: int, n_users: int, minimums=None) -> str:
    """"" when every size reaches its minimum, else e.g. "too small: 8 pairs < 20, 3 users < 4"."""
    m = MIN_SIZES if minimums is None else minimums
    bad = [f"{n} {what} < {m[what]}" for n, what in ((n_models, "models"), (n_pairs, "pairs"), (n_users, "users"))
           if n < m[what]]
    return "too small: " + ", ".join(bad) if bad else ""


def no_tau(n: int, n_groups: int, n_pairs: int, n_users: int, n_boot: int, status: str) -> dict:
    """The result of :func:`kendall_tau_hier_ci` for a cell without a number (yet): its sizes and ``status``."""
    nan = float("nan")
    return {"tau": nan, "p": nan, "p_exact": nan, "ci_lo": nan, "ci_hi": nan, "n": n, "n_groups": n_groups,
            "n_pairs": n_pairs, "n_users": n_users, "n_boot": n_boot, "n_degenerate": 0, "status": status}


def exact_permutation_p(x, y) -> float:
    """Two-sided exact permutation p-value of Kendall tau-b (every pairing of ``y`` with ``x``); NaN when a side
    is constant. ``n`` above :data:`MAX_EXACT_N` is refused (n! pairings)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) != len(y):
        raise ValueError(f"exact_permutation_p: {len(x)} x values but {len(y)} y values")
    if len(x) > MAX_EXACT_N:
        raise ValueError(f"exact_permutation_p: n = {len(x)} > {MAX_EXACT_N} has too many permutations for an exact test")
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    def tau_b(b, axis=-1):  # vectorised over scipy's batches of permuted y
        b = np.moveaxis(np.asarray(b), axis, -1)
        rows = b.reshape(-1, b.shape[-1])
        return tau_b_rows(np.broadcast_to(x, rows.shape), rows).reshape(b.shape[:-1])

    # one sample with "pairings": scipy permutes y against the fixed x, all n! orders (two samples would be (n!)^2)
    res = stats.permutation_test((y,), tau_b, permutation_type="pairings", alternative="two-sided",
                                 n_resamples=np.inf, vectorized=True, batch=5000)
    return float(res.pvalue)


def _two_stage(rng, groups: np.ndarray, r: int) -> np.ndarray:
    """Counts ``[r, n]`` of each item in ``r`` two-stage resamples: groups with replacement, then the members of
    each drawn group with replacement (as many as the group has)."""
    uniq, inv = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inv == g) for g in range(len(uniq))]
    counts = np.zeros((r, len(groups)))
    drawn = rng.integers(0, len(uniq), size=(r, len(uniq)))
    for g, idx in enumerate(members):  # every drawn copy of group g draws its members again
        times = (drawn == g).sum(1)  # [r]
        for t in range(1, times.max() + 1 if len(times) else 1):
            rows = np.flatnonzero(times >= t)
            pick = idx[rng.integers(0, len(idx), size=(len(rows), len(idx)))]
            np.add.at(counts, (rows[:, None], pick), 1.0)
    return counts


def _weighted_tau_b(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """tau-b of rows ``a[r], b[r]`` ``[r, M]`` over items with multiplicities ``w[r]`` (a repeated item ties with
    itself, as scipy's variant b on the expanded list)."""
    sa, sb = np.sign(a[:, :, None] - a[:, None]), np.sign(b[:, :, None] - b[:, None])
    quad = lambda m: np.einsum("ri,rij,rj->r", w, m, w)  # noqa: E731
    s, na, nb = quad(sa * sb), quad(np.abs(sa)), quad(np.abs(sb))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((na > 0) & (nb > 0), s / np.sqrt(na * nb), np.nan)


def kendall_tau_hier_ci(x_pairs, y_pairs, model_groups, pair_groups, n_boot: int = 1000, alpha: float = 0.05,
                        seed: int = 0, max_degenerate_frac: float = MAX_DEGENERATE_FRAC, minimums=None,
                        chunk: int = 250) -> dict:
    """tau-b between the row means of two ``[M models, P pairs]`` outcome arrays, with a hierarchical bootstrap CI.

    Models: groups (``model_groups``, e.g. methods) with replacement, then members within each drawn group;
    pairs: clusters (``pair_groups``, e.g. users) with replacement, then pairs within each drawn user. Each
    resample recomputes both accuracies as count-weighted means and tau-b over the drawn models with their
    multiplicities. Returns tau, p (scipy, models only), p_exact (M <= :data:`MAX_EXACT_N`), ci_lo, ci_hi, n,
    n_groups, n_pairs, n_users, n_boot, n_degenerate and ``status``: "" or why there is no number (a size below
    ``minimums``: no tau at all; a constant side; too many constant resamples: no CI).
    """
    check_values("kendall_tau_hier_ci", CI_RULES, {"n_boot": n_boot, "alpha": alpha, "seed": seed})
    X, Y = np.asarray(x_pairs, dtype=float), np.asarray(y_pairs, dtype=float)
    if X.shape != Y.shape or X.ndim != 2:
        raise ValueError(f"kendall_tau_hier_ci: x_pairs and y_pairs must be [models, pairs] arrays of one shape, "
                         f"got {X.shape} and {Y.shape}")
    if np.isnan(X).any() or np.isnan(Y).any():
        raise ValueError("kendall_tau_hier_ci: x_pairs / y_pairs hold NaN outcomes")
    M, P = X.shape
    mg, pg = np.asarray(model_groups), np.asarray(pair_groups)
    if len(mg) != M:
        raise ValueError(f"kendall_tau_hier_ci: model_groups has {len(mg)} entries for {M} models")
    if len(pg) != P:
        raise ValueError(f"kendall_tau_hier_ci: pair_groups has {len(pg)} entries for {P} pairs")
    n_users = len(np.unique(pg)) if P else 0
    out = no_tau(M, len(np.unique(mg)) if M else 0, P, n_users, n_boot, size_status(M, P, n_users, minimums))
    if out["status"]:
        return out
    xm, ym = X.mean(1), Y.mean(1)
    if np.ptp(xm) == 0 or np.ptp(ym) == 0:
        out["status"] = "undefined: constant " + ("RM accuracy" if np.ptp(xm) == 0 else "policy accuracy")
        return out
    r = stats.kendalltau(xm, ym, variant="b")
    out["tau"], out["p"] = float(r.statistic), float(r.pvalue)
    if M <= MAX_EXACT_N:
        out["p_exact"] = exact_permutation_p(xm, ym)
    rng = np.random.default_rng(seed)
    taus = []
    for s in range(0, n_boot, chunk):
        k = min(chunk, n_boot - s)
        cp, cm = _two_stage(rng, pg, k), _two_stage(rng, mg, k)  # [k, P], [k, M]
        xb, yb = cp @ X.T / cp.sum(1, keepdims=True), cp @ Y.T / cp.sum(1, keepdims=True)  # [k, M]
        taus.append(_weighted_tau_b(xb, yb, cm))
    taus = np.concatenate(taus)
    ok = taus[~np.isnan(taus)]
    out["n_degenerate"] = int(len(taus) - len(ok))
    if out["n_degenerate"] > max_degenerate_frac * n_boot:
        out["status"] = f"no CI: {out['n_degenerate']} of {n_boot} resamples constant"
    elif len(ok):
        out["ci_lo"], out["ci_hi"] = float(np.quantile(ok, alpha / 2)), float(np.quantile(ok, 1 - alpha / 2))
    return out


def paired_gap_ci(a, b, groups=None, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> dict:
    """mean(a - b) over paired items (e.g. ICL vs the best RGD's ROUGE-1 on the same test queries) with a
    percentile bootstrap CI resampling the items or, with ``groups`` (users), users then items within them.
    Returns gap, ci_lo, ci_hi, n, n_groups."""
    check_values("paired_gap_ci", CI_RULES, {"n_boot": n_boot, "alpha": alpha, "seed": seed})
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) != len(b):
        raise ValueError(f"paired_gap_ci: {len(a)} values of a but {len(b)} of b")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("paired_gap_ci: NaN values")
    g = np.arange(len(a)) if groups is None else np.asarray(groups)
    if len(g) != len(a):
        raise ValueError(f"paired_gap_ci: groups has {len(g)} entries for {len(a)} items")
    out = {"gap": float("nan"), "ci_lo": float("nan"), "ci_hi": float("nan"), "n": len(a),
           "n_groups": len(np.unique(g)) if len(a) else 0}
    if not len(a):
        return out
    d = a - b
    out["gap"] = float(d.mean())
    c = _two_stage(np.random.default_rng(seed), g, n_boot)
    boots = c @ d / c.sum(1)
    out["ci_lo"], out["ci_hi"] = float(np.quantile(boots, alpha / 2)), float(np.quantile(boots, 1 - alpha / 2))
    return out
