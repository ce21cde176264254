"""lib/report/curves.py: the policy-accuracy-vs-w and KL-vs-w figures carry human labels and the base reference."""
import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lib.report import curves  # noqa: E402


def _pa():
    rows = []
    for d in ("cumulative", "rgd_likelihood"):
        for m in ("bt", "vpl"):
            for w in (0.0, 0.5, 2.0):
                rows.append({"task": "LaMP-4", "user_group": "seen", "normalise": False, "definition": d, "method": m,
                             "rm": f"{m}/x", "w": w, "policy_acc": 0.5 + 0.1 * w, "base_acc": 0.4 if d == "cumulative" else 0.3})
    return pd.DataFrame(rows)


def test_policy_accuracy_vs_w_shows_the_base_accuracy_of_each_definition():
    fig = curves.plot_policy_accuracy_vs_w(_pa())
    axes = fig.axes
    assert len(axes) == 2 and axes[0].get_ylabel() == "policy accuracy" and "w" in axes[-1].get_xlabel()
    refs = [ln.get_ydata()[0] for ax in axes for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert sorted(refs) == [0.3, 0.4]  # the reference under the panel's own definition
    assert {t.get_text() for t in fig.legends[0].get_texts()} == {"bt", "vpl", "base policy (w = 0)"}
    with pytest.raises(ValueError, match="no raw-score rows"):
        curves.plot_policy_accuracy_vs_w(_pa().assign(normalise=True))


def test_policy_accuracy_vs_w_of_one_policy_draws_its_own_base_line():
    """Notebook 04 draws one figure per policy: pooling two policies would average their curves under one policy's
    base line."""
    two = pd.concat([_pa().assign(policy="small"), _pa().assign(policy="big", base_acc=0.7, policy_acc=0.9)])
    fig = curves.plot_policy_accuracy_vs_w(two, policy="big")
    refs = sorted(ln.get_ydata()[0] for ax in fig.axes for ln in ax.get_lines() if ln.get_linestyle() == "--")
    curve = [ln.get_ydata() for ax in fig.axes for ln in ax.get_lines() if ln.get_linestyle() != "--"]
    assert refs == [0.7, 0.7] and all((c == 0.9).all() for c in curve)
    assert "policy big" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="policy 'nope'"):
        curves.plot_policy_accuracy_vs_w(two, policy="nope")


def test_kl_vs_w_is_log_log_and_spread_measures_equal_strength():
    kl = pd.DataFrame({"task": "t", "policy": "p", "rm": ["a"] * 3 + ["b"] * 3, "method": ["bt"] * 3 + ["pal"] * 3,
                       "w": [0.0, 1.0, 2.0] * 2, "kl": [0.0, 0.1, 0.4, 0.0, 0.2, 0.8]})
    fig = curves.plot_kl_vs_w(kl)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log" and "KL" in ax.get_ylabel()
    assert len(ax.get_lines()) == 2
    s = curves.spread(kl).set_index("w").kl_max_over_min
    assert s.to_dict() == pytest.approx({1.0: 2.0, 2.0: 2.0})
    with pytest.raises(ValueError, match="no positive KL"):
        curves.plot_kl_vs_w(kl.assign(kl=0.0))
    assert np.isfinite(s).all()
