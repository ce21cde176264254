"""The data helpers behind notebook 06's Pref-LaMP table and figure (lib/report/plots.py, lib/data/preflamp.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lib.data import preflamp
from lib.report import plots


def test_pair_lengths_long_format():
    pairs = pd.DataFrame({"task": ["LaMP-4", "LaMP-5"], "user": ["a", "b"], "chosen": ["one two three", "x"],
                          "rejected": ["four", "y z"], "user_group": ["seen", "unseen"], "split": ["train", "test"]})
    t = plots.pair_lengths(pairs)
    assert t.to_dict("list") == {"task": ["LaMP-4", "LaMP-5", "LaMP-4", "LaMP-5"], "user": ["a", "b", "a", "b"],
                                 "side": ["chosen", "chosen", "rejected", "rejected"], "words": [3, 1, 1, 2]}
    assert list(pairs.columns) == ["task", "user", "chosen", "rejected", "user_group", "split"]  # input untouched


def test_preflamp_overview_does_not_touch_its_input():
    import matplotlib.pyplot as plt

    pairs = pd.DataFrame({"task": ["LaMP-4"] * 3, "user": ["a", "a", "b"], "chosen": ["a b", "c", "d e f"],
                          "rejected": ["g", "h i", "j"], "user_group": ["seen", "seen", "unseen"],
                          "split": ["train", "test", "test"]})
    before = pairs.copy()
    fig = plots.plot_preflamp_overview(pairs)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["Pref-LaMP pairs", "output length (words)"]
    pd.testing.assert_frame_equal(pairs, before)
    plt.close(fig)


def test_counts_table_one_row_per_task_in_manifest_order():
    manifest = {"tasks": {"LaMP-7": {"users": 3, "pairs": 10}, "LaMP-4": {"users": 2, "pairs": 8}}}
    t = preflamp.counts_table(manifest)
    assert t.to_dict("list") == {"task": ["LaMP-7", "LaMP-4"], "users": [3, 2], "pairs": [10, 8]}


def test_an_interval_that_touches_its_estimate_is_drawn_not_refused():
    """A percentile-bootstrap bound can sit a last bit past its estimate (tau -0.2, CI [-0.707, -0.2] as computed
    on a real run): matplotlib refuses negative error bars, so notebook 06 used to stop there."""
    y, lo = -0.2, -0.7071067811865476
    hi = -0.20000000000000004  # a last bit *below* the estimate: hi - y < 0
    assert hi - y < 0
    taus = pd.DataFrame({"task": ["LaMP-4", "LaMP-5"], "metric": ["rm_acc", "rm_acc"], "policy": ["p", "p"],
                         "tau": [y, 0.3], "ci_lo": [lo, 0.1], "ci_hi": [hi, np.nan]})
    import matplotlib.pyplot as plt

    fig = plots.plot_tau_points(taus)
    segs = np.concatenate([c.get_segments() for c in fig.axes[0].collections if hasattr(c, "get_segments")])
    first = [s for s in segs if np.isclose(min(s[:, 1]), lo)]
    assert len(first) == 1 and max(first[0][:, 1]) == y  # drawn from the lower bound up to the estimate
    plt.close(fig)
    err = plots.interval_err([y, 0.3], np.array([lo, 0.1]), np.array([hi, np.nan]))
    assert err[1, 0] == 0.0 and err[0, 0] == pytest.approx(y - lo) and np.isnan(err[1, 1])
