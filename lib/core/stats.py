"""The seeded percentile bootstrap (:func:`bootstrap_ci`, Efron & Tibshirani 1993) that every stage's
confidence intervals use: RM accuracy (lib/rewards/zoo.py), policy accuracy, ROUGE and Kendall tau
(lib/evaluation/metrics.py re-exports it as ``metrics.bootstrap_ci``)."""
from __future__ import annotations

import numpy as np
from scipy import stats

from .params import check_values, count, fraction

CI_RULES = {"n_boot": count(1), "alpha": fraction(), "seed": count(0)}  # every bootstrap of the project


def bootstrap_ci(values, stat=np.mean, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
                 quantile: str = "numpy"):
    """Percentile bootstrap CI ``(lo, hi)`` of ``stat`` over the rows of ``values`` (seeded).

    All resamples are drawn at once (one ``[n_boot, n]`` index array); ``stat`` is applied along
    axis 1 when it accepts ``axis`` (``np.mean``, ``np.median``), else resample by resample.
    ``quantile``: how the ``alpha / 2`` and ``1 - alpha / 2`` percentiles are interpolated, ``"numpy"``
    (``np.quantile``) or ``"scipy"`` (``scipy.stats.quantile``, as ``scipy.stats.bootstrap(method="percentile")``
    does: with ``alpha = 1 - level`` its CIs bit for bit; numpy's can differ in the last bits). The RM
    accuracies of lib/rewards use ``"scipy"``.
    """
    check_values("bootstrap_ci", CI_RULES, {"n_boot": n_boot, "alpha": alpha, "seed": seed})
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        raise ValueError("bootstrap_ci: no values")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    try:
        boots = np.asarray(stat(x[idx], axis=1), dtype=float)
    except TypeError:
        boots = np.array([stat(x[i]) for i in idx])
    if quantile == "scipy":
        lo, hi = stats.quantile(boots, np.array([alpha / 2, 1 - alpha / 2]))
        return float(lo), float(hi)
    if quantile != "numpy":
        raise ValueError(f"bootstrap_ci: quantile must be 'numpy' or 'scipy', not {quantile!r}")
    return float(np.quantile(boots, alpha / 2)), float(np.quantile(boots, 1 - alpha / 2))
