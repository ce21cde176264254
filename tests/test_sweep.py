"""lib/evaluation/sweep.py (notebook 03) on hand-made queries and the tiny random models; lib/rewards/rm_checks.py (notebook 02)."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from lib.core import schema
from lib.decoding import rgd
from lib.evaluation import sweep
from lib.report import plots
from lib.rewards import RewardModel, rm_checks

from _tiny import tiny_lm, tiny_tokenizer


class LinearRM(RewardModel):
    """r = <features, a + u_user> / sqrt(d), random and seeded."""

    method = "linear"

    def __init__(self, seed: int, users=("ann", "bob")):
        super().__init__("tiny", "lm_last", 32, list(users))
        g = torch.Generator().manual_seed(seed)
        self.a = nn.Parameter(torch.randn(32, generator=g))
        self.u = nn.Parameter(torch.randn(len(users), 32, generator=g))

    def head(self, feats, user_idx):
        return 3.0 * (feats * (self.a + self.u[user_idx])).sum(-1) / 32 ** 0.5


def q(qid, user, group="seen", rule=None, ref="stock market rises"):
    return {"query_id": qid, "user": user, "user_group": group, "rule": rule, "reference": ref,
            "prompt": f"generate a headline for this article : stock market rises today {qid}"}


def test_pick_user_first_seen_user_with_a_rule():
    qs = [q("t/3", "bob", rule="question"), q("t/1", "bob", rule="question"), q("t/2", "ann"),
          q("t/0", "aaa", group="unseen", rule="short"), q("t/4", "bob", rule="question")]
    user, mine = sweep.pick_user(qs, None, n_queries=2)
    assert user == "bob" and [x["query_id"] for x in mine] == ["t/1", "t/3"]
    assert sweep.pick_user([q("t/2", "cy"), q("t/1", "ann")])[0] == "ann"  # no rule anywhere: first seen user
    with pytest.raises(ValueError, match="'aaa' has no seen queries"):
        sweep.pick_user(qs, "aaa")


def test_score_decodes_rouge_rule_and_identity_columns():
    qs = [q("t/1", "bob", rule="question", ref="why markets rise?"), q("t/2", "bob", rule="question", ref="a b")]
    rows = [{"policy": "p", "method": "bt", "w": 0.0, "query_id": "t/1", "generation": "why markets rise?"},
            {"policy": "p", "method": "bt", "w": 1.0, "query_id": "t/2", "generation": "c d"}]
    dec = sweep.score_decodes(rows, qs, "LaMP-4", "bob", calibrated=False)
    assert list(dec.columns) == ["policy", "method", "w", "query_id", "generation", "reference", "rouge1",
                                 "follows_rule", "task", "user", "calibrated"]
    assert dec.rouge1.tolist() == [1.0, 0.0] and dec.follows_rule.tolist() == [True, False]
    assert set(dec.task) == {"LaMP-4"} and set(dec.user) == {"bob"} and not dec.calibrated.any()
    no_rule = sweep.score_decodes(rows, [dict(x, rule=None) for x in qs], "LaMP-4", "bob", calibrated=True)
    assert "follows_rule" not in no_rule and no_rule.calibrated.all()


def test_read_decodes_gives_back_what_was_written(tmp_path):
    dec = pd.DataFrame({"policy": ["p", "p"], "method": ["bt", "pal"], "w": [0.0, 0.03], "query_id": ["t/1", "t/1"],
                        "generation": ["", "NA"], "reference": ["0012", "x"], "rouge1": [0.1 + 0.2, 1 / 3],
                        "follows_rule": [True, False], "task": ["LaMP-4"] * 2, "user": ["007", "007"],
                        "calibrated": [False, False]})
    (tmp_path / "decodes.csv").write_text(dec.to_csv(index=False))
    back = schema.read_decodes(tmp_path / "decodes.csv")
    pd.testing.assert_frame_equal(back, dec)  # exact: 0.1 + 0.2 stays 0.30000000000000004, "007" stays text


def test_most_moved_method_counts_rows_that_differ_from_greedy():
    rows = [("a", 0.0, "q1", "g1"), ("a", 0.0, "q2", "g2"), ("b", 0.0, "q1", "g1"), ("b", 0.0, "q2", "g2"),
            ("a", 1.0, "q1", "x"), ("a", 1.0, "q2", "g2"), ("b", 1.0, "q1", "y"), ("b", 1.0, "q2", "z")]
    dec = pd.DataFrame(rows, columns=["method", "w", "query_id", "generation"]).assign(policy="p")
    assert sweep.most_moved_method(dec, "p") == "b"  # b moved 2 of 2 rows, a 1 of 2
    tie = dec.assign(generation=dec.generation.replace({"z": "g2"}))
    assert sweep.most_moved_method(tie, "p") == "a"  # 1 of 2 each: the first method


def test_candidate_table_skips_padding_and_marks_the_choice():
    tok = tiny_tokenizer()
    ids = [tok.convert_tokens_to_ids(t) for t in ("cat", "dog", "mat")]
    out = rgd.RGDOutput(sequences=[[ids[1]]], texts=["dog"], path="shared",
                        cand_ids=torch.tensor([[[ids[0], ids[1]], [ids[2], -1]]]),
                        cand_logp=torch.tensor([[[-1.0, -2.0], [-0.5, math.nan]]]),
                        cand_reward=torch.tensor([[[0.0, 4.0], [1.0, math.nan]]]),
                        chosen=torch.tensor([[1, 0]]), extra={"w": 0.5})
    t = sweep.candidate_table(out, tok)
    assert t.candidate.tolist() == ["'cat'", "'dog'", "'mat'"] and t.step.tolist() == [0, 0, 1]
    assert t.score.tolist() == [-1.0, 0.0, 0.0] and t.chosen.tolist() == [False, True, True]


def test_decode_sweep_rows_equal_one_setting_at_a_time():
    tok = tiny_tokenizer()
    tok.padding_side = "left"
    policy = tiny_lm(tok, seed=0)
    rms = {("tiny", "m1"): LinearRM(3), ("tiny", "m2"): LinearRM(4), ("other", "m3"): LinearRM(5)}
    qs, ws = [q("t/1", "ann"), q("t/2", "ann")], [0.5, 4.0]
    rows, path = sweep.decode_sweep(policy, tok, "tiny", rms, qs, "ann", ws, k=4, max_new_tokens=5)
    dec = pd.DataFrame(rows)
    assert path == "shared" and len(dec) == 2 * 2 + 2 * 2 * 2  # greedy per method and query, then methods x ws x queries
    assert set(dec.method) == {"m1", "m2"} and sorted(set(dec.w)) == [0.0, 0.5, 4.0]
    greedy = rgd.generate(policy, tok, [x["prompt"] for x in qs], settings=rgd.DecodingSettings(max_new_tokens=5),
                          policy_name="tiny").texts
    assert dec[dec.w == 0].groupby("query_id").generation.agg(set).to_dict() == \
        {"t/1": {greedy[0].strip()}, "t/2": {greedy[1].strip()}}
    for (m, w), part in dec[dec.w > 0].groupby(["method", "w"]):
        one = rgd.generate(policy, tok, [x["prompt"] for x in qs], users="ann", rm=rms["tiny", m], w=w,
                           settings=rgd.DecodingSettings(k=4, max_new_tokens=5), policy_name="tiny").texts
        assert part.generation.tolist() == [t.strip() for t in one], (m, w)


def test_plot_rgd_sweep_names_and_panels():
    import matplotlib.pyplot as plt

    rows = [(p, m, w, qid, r) for p in ("pol-b", "pol-a") for m in ("bt", "pal") for w in (0.0, 0.1, 1.0)
            for qid, r in (("q1", 0.2), ("q2", 0.4))]
    dec = pd.DataFrame(rows, columns=["policy", "method", "w", "query_id", "rouge1"]).assign(
        task="LaMP-5", user="u7", calibrated=True)
    fig, name = plots.plot_rgd_sweep(dec)
    assert name == "rgd_w_sweep_calibrated_LaMP-5"
    assert [ax.get_title() for ax in fig.axes] == ["bt", "pal"]  # a panel per method, a line per policy
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["pol-b", "pol-a", "greedy (w = 0), same colour"]
    assert fig.axes[0].get_xscale() == "log" and "user u7" in fig.get_suptitle().replace("\n", " ")
    assert "calibrated rewards" in fig.get_suptitle()
    plt.close(fig)


# ----------------------------------------------------------------------------- lib/rewards/rm_checks.py (notebook 02)
def _pair(pid, user, group, split):
    return {"pair_id": pid, "user": user, "user_group": group, "split": split}


def test_pair_counts_per_dataset_group_and_split():
    data = {"tldr": [_pair("1", "a", "seen", "train"), _pair("2", "a", "seen", "test"), _pair("3", "b", "seen", "train"),
                     _pair("4", "c", "unseen", "test")],
            "LaMP-4": [_pair("5", "x", "seen", "train")]}
    t = rm_checks.pair_counts(data)
    assert t.loc[("tldr", "seen"), ("pairs", "train")] == 2 and t.loc[("tldr", "seen"), ("users", "train")] == 2
    assert t.loc[("tldr", "seen"), ("pairs", "test")] == 1 and t.loc[("tldr", "unseen"), ("users", "test")] == 1
    assert math.isnan(t.loc[("tldr", "unseen"), ("pairs", "train")])
    assert t.loc[("LaMP-4", "seen"), ("pairs", "train")] == 1


def test_train_time_table_mean_and_max_per_backbone():
    index = pd.DataFrame({"method": ["bt", "bt", "pal", "bt"], "backbone": ["m", "m", "m", "s"],
                          "train_seconds": [1.0, 2.0, 0.5, 3.0]})
    t = rm_checks.train_time_table(index)
    assert list(t.columns) == ["method", "mean (m)", "mean (s)", "max (m)", "max (s)"]
    assert t.iloc[0].tolist() == ["bt", 1.5, 3.0, 2.0, 3.0]
    assert t.iloc[1, :2].tolist() == ["pal", 0.5] and math.isnan(t.iloc[1]["mean (s)"])


def test_swap_users_moves_seen_users_cyclically():
    recs = [_pair("1", "b", "seen", "test"), _pair("2", "a", "seen", "test"), _pair("3", "c", "seen", "train"),
            _pair("4", "z", "unseen", "test")]
    assert [r["user"] for r in rm_checks.swap_users(recs)] == ["c", "b", "a", "z"]
    assert recs[0]["user"] == "b"  # the input is not modified


def test_accuracy_artifact_round_trip(tmp_path):
    table = pd.DataFrame({"task": ["LaMP-4"], "method": ["bt"], "prefix_train": [False],
                          "rm_acc_seen": [2 / 3], "ci_low": [0.1 + 0.2], "degenerate": [0]})
    path = rm_checks.write_accuracy(table, tmp_path / "rms")
    assert path == tmp_path / "rms" / "accuracy.csv"
    pd.testing.assert_frame_equal(rm_checks.read_accuracy(tmp_path / "rms"), table)
