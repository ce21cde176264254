"""The data helpers behind notebook 06's Pref-LaMP table and figure (lib/report/plots.py, lib/data/preflamp.py)."""
from __future__ import annotations

import pandas as pd

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
