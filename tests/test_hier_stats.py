"""lib/evaluation/tau_stats.py: minimum sizes, the hierarchical bootstrap, the exact permutation p, the paired gap."""
import itertools

import numpy as np
import pytest
from scipy import stats

from lib.evaluation import metrics, tau_stats


def _clustered(n_models=8, n_users=5, per_user=6, seed=0):
    """Per-pair outcomes where every pair of a user has the same outcome per model (pairs fully correlated)."""
    rng = np.random.default_rng(seed)
    skill = np.linspace(0.2, 0.8, n_models)
    user = rng.random((n_models, n_users)) < skill[:, None]  # [M, U]
    X = np.repeat(user, per_user, axis=1).astype(float)
    Y = np.repeat(rng.random((n_models, n_users)) < skill[:, None], per_user, axis=1).astype(float)
    return X, Y, np.repeat(np.arange(n_users), per_user)


def test_correlated_pairs_widen_the_ci_and_independent_pairs_do_not():
    X, Y, users = _clustered(n_models=12, n_users=6, per_user=10)
    hier = tau_stats.kendall_tau_hier_ci(X, Y, np.arange(len(X)), users, n_boot=600, seed=1, max_degenerate_frac=1.0)
    as_if_independent = tau_stats.kendall_tau_hier_ci(X, Y, np.arange(len(X)), np.arange(X.shape[1]), n_boot=600,
                                                      seed=1, max_degenerate_frac=1.0)
    flat = metrics.kendall_tau_pairs_ci(X, Y, n_boot=600, seed=1)
    assert hier["tau"] == pytest.approx(flat["tau"])  # same point estimate: tau-b of the row means
    # 60 pairs that are really 6 users: resampling users shows the noise that resampling pairs hides
    width = lambda r: r["ci_hi"] - r["ci_lo"]  # noqa: E731
    assert width(hier) > 1.2 * width(as_if_independent) and width(hier) > 1.2 * width(flat)
    # one pair per user: the two-stage bootstrap is the flat one (up to resampling noise)
    rng = np.random.default_rng(3)
    Xi, Yi = (rng.random((8, 40)) < np.linspace(0.2, 0.8, 8)[:, None]).astype(float), rng.random((8, 40)).round()
    a = tau_stats.kendall_tau_hier_ci(Xi, Yi, np.arange(8), np.arange(40), n_boot=600, seed=1, max_degenerate_frac=1)
    b = metrics.kendall_tau_pairs_ci(Xi, Yi, n_boot=600, seed=1)
    assert abs(width(a) - width(b)) < 0.15


def test_model_groups_resample_methods_not_copies():
    """Four copies of each of 3 methods: the flat bootstrap counts 12 models, the hierarchical one 3 methods."""
    rng = np.random.default_rng(0)
    base_x = (rng.random((3, 40)) < np.array([[0.3], [0.5], [0.7]])).astype(float)
    base_y = (rng.random((3, 40)) < np.array([[0.4], [0.5], [0.6]])).astype(float)
    X, Y = np.repeat(base_x, 4, axis=0), np.repeat(base_y, 4, axis=0)
    groups = np.repeat(["bt", "lore", "pal"], 4)
    mins = {"models": 3, "pairs": 20, "users": 4}
    hier = tau_stats.kendall_tau_hier_ci(X, Y, groups, np.arange(40), n_boot=500, seed=0, minimums=mins,
                                         max_degenerate_frac=1.0)
    flat = metrics.kendall_tau_pairs_ci(X, Y, n_boot=500, seed=0)
    assert hier["n_groups"] == 3 and hier["n"] == 12
    assert hier["ci_hi"] - hier["ci_lo"] >= flat["ci_hi"] - flat["ci_lo"]


def test_a_cell_below_the_minimum_has_no_number_and_says_why():
    X, Y, users = _clustered(n_models=4, n_users=3, per_user=2)
    r = tau_stats.kendall_tau_hier_ci(X, Y, np.arange(4), users, n_boot=100)
    assert np.isnan(r["tau"]) and np.isnan(r["ci_lo"])
    assert r["status"] == "too small: 4 models < 5, 6 pairs < 20, 3 users < 4"
    assert tau_stats.size_status(5, 20, 4) == ""


def test_a_constant_side_and_too_many_constant_resamples_are_named():
    X = np.tile([1.0, 0.0], (6, 12))
    Y = (np.random.default_rng(0).random((6, 24)) < 0.5).astype(float)
    r = tau_stats.kendall_tau_hier_ci(X, Y, np.arange(6), np.arange(24) // 4, n_boot=100)
    assert r["status"] == "undefined: constant RM accuracy" and np.isnan(r["tau"])
    # models that differ on one pair only: most resamples miss it, so no CI, with the count
    X = np.zeros((6, 24))
    X[0, 0] = 1.0
    Y = np.tile(np.linspace(0, 1, 6)[:, None], (1, 24)).round(1)
    r = tau_stats.kendall_tau_hier_ci(X, Y, np.arange(6), np.arange(24) // 4, n_boot=200)
    assert not np.isnan(r["tau"]) and np.isnan(r["ci_lo"]) and r["n_degenerate"] > 10
    assert r["status"] == f"no CI: {r['n_degenerate']} of 200 resamples constant"


@pytest.mark.parametrize("n", [5, 6])
def test_exact_permutation_p_equals_brute_force(n):
    rng = np.random.default_rng(n)
    x, y = rng.integers(0, 3, n).astype(float), rng.integers(0, 4, n).astype(float)  # with ties
    obs = abs(stats.kendalltau(x, y, variant="b").statistic)
    perms = [abs(stats.kendalltau(x, np.array(p), variant="b").statistic) for p in itertools.permutations(y)]
    brute = np.mean([t >= obs - 1e-12 for t in perms])
    assert tau_stats.exact_permutation_p(x, y) == pytest.approx(brute)
    assert np.isnan(tau_stats.exact_permutation_p(x, np.ones(n)))
    with pytest.raises(ValueError, match="too many permutations"):
        tau_stats.exact_permutation_p(np.arange(10), np.arange(10))


def test_paired_gap_ci():
    rng = np.random.default_rng(0)
    a, b = rng.random(30), rng.random(30)
    r = tau_stats.paired_gap_ci(a, b, n_boot=500, seed=0)
    assert r["gap"] == pytest.approx(np.mean(a - b)) and r["ci_lo"] <= r["gap"] <= r["ci_hi"] and r["n"] == 30
    same = tau_stats.paired_gap_ci(a, a, n_boot=100)
    assert same["gap"] == same["ci_lo"] == same["ci_hi"] == 0.0
    users = np.repeat(np.arange(5), 6)  # each user's queries move together
    d = np.repeat(rng.normal(0, 1, 5), 6)
    grouped = tau_stats.paired_gap_ci(d, np.zeros(30), groups=users, n_boot=500)
    flat = tau_stats.paired_gap_ci(d, np.zeros(30), n_boot=500)
    assert grouped["n_groups"] == 5 and grouped["ci_hi"] - grouped["ci_lo"] > 1.5 * (flat["ci_hi"] - flat["ci_lo"])
    assert tau_stats.paired_gap_ci(a, b, n_boot=200, seed=4) == tau_stats.paired_gap_ci(a, b, n_boot=200, seed=4)
    with pytest.raises(ValueError, match="30 values of a but 29"):
        tau_stats.paired_gap_ci(a, b[:-1])
