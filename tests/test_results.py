"""Tables of generations (lib/report/results.py): summaries, val-selected best systems, ICL gap, rule following."""
import pandas as pd
import pytest

from lib.report import results


def test_summaries():
    rows = []
    for sys_, param, rm, r1 in [("base", None, None, 0.2), ("icl", 1, None, 0.3), ("icl", 2, None, 0.5),
                                ("rgd", 1.0, "a", 0.1), ("rgd", 2.0, "a", 0.4), ("rgd", 1.0, "b", 0.35)]:
        for q in range(3):
            rows.append({"task": "LaMP-4", "model": "smollm2-135m", "system": sys_, "param": param, "rm": rm,
                         "rouge1": r1, "rougeL": r1, "follows_rule": q == 0})
    s = results.summarize(pd.DataFrame(rows), n_boot=20)
    assert len(s) == 6 and s.follows_rule.tolist() == pytest.approx([1 / 3] * 6)
    b = results.best_systems(s)
    assert b.system.tolist() == ["base", "icl", "rgd"]
    assert b.rouge1.tolist() == pytest.approx([0.2, 0.5, 0.4]) and b.params_m.iloc[0] == 135
    assert b.param.iloc[1] == 2 and b.rm.iloc[2] == "a"
    j = results.rm_vs_rouge(s, pd.DataFrame({"task": ["LaMP-4"] * 2, "rm": ["a", "b"], "rm_acc": [0.9, 0.6]}))
    assert j.set_index("rm").rouge1.to_dict() == pytest.approx({"a": 0.4, "b": 0.35})
    with pytest.raises(KeyError, match="no row"):
        results.rm_vs_rouge(s, pd.DataFrame({"task": ["LaMP-4"], "rm": ["a"], "rm_acc": [0.9]}))

def _gen_rows(spec):
    """Results rows from {(system, rm, param): {query_id: rouge1}}; q0, q1 are val, q2, q3 test."""
    rows = []
    for (system, rm, param), scores in spec.items():
        for q, r in scores.items():
            rows.append({"task": "t", "model": "m", "system": system, "rm": rm, "param": param, "query_id": q,
                         "user": f"u{int(q[1:]) % 2}",
                         "half": "val" if q in ("q0", "q1") else "test", "rouge1": r, "rougeL": r,
                         "follows_rule": None})
    return pd.DataFrame(rows)


def test_best_settings_are_chosen_on_val_and_reported_on_test():
    gen = _gen_rows({("base", None, None): {"q0": .2, "q1": .2, "q2": .3, "q3": .3},
                     ("icl", None, 1.0): {"q0": .5, "q1": .5, "q2": .1, "q3": .1},   # best on val, poor on test
                     ("icl", None, 4.0): {"q0": .4, "q1": .4, "q2": .9, "q3": .9},   # best on test only
                     ("rgd", "a", 0.5): {"q0": .1, "q1": .1, "q2": .8, "q3": .8},
                     ("rgd", "a", 2.0): {"q0": .3, "q1": .3, "q2": .0, "q3": .0},
                     ("rgd", "b", 0.5): {"q0": .1, "q1": .1, "q2": .7, "q3": .7}})
    s = results.summarize(gen, n_boot=50)
    best = results.best_systems(s).set_index("system")
    assert best.loc["icl", "param"] == 1.0 and best.loc["icl", "rouge1"] == pytest.approx(0.1)
    assert best.loc["icl", "val_rouge1"] == pytest.approx(0.5) and best.loc["icl", "n"] == 2
    assert best.loc["rgd", "rm"] == "a" and best.loc["rgd", "param"] == 2.0 and best.loc["rgd", "rouge1"] == 0.0
    # the base policy is a candidate of RGD: a grid where no reward model beats it on val reports the base
    no_help = results.best_systems(s[~((s.system == "rgd") & (s.param == 2.0))]).set_index("system")
    assert no_help.loc["rgd", "param"] == 0.0 and pd.isna(no_help.loc["rgd", "rm"])
    assert no_help.loc["rgd", "rouge1"] == pytest.approx(0.3)
    assert best.loc["base", "rouge1"] == pytest.approx(0.3)
    sel = results.select_rgd_w(s).set_index("rm")
    # rm a, decoded over a sweep: w = 2 wins on val (0.3 > base 0.2); rm b, decoded at its one deployed setting
    # (notebook 04's choice on validation pairs): reported as it is, even where the base policy would win on val
    assert sel.loc["a", "w_selected"] == 2.0 and sel.loc["a", "rouge1"] == 0.0
    assert sel.loc["b", "w_selected"] == 0.5 and sel.loc["b", "rouge1"] == pytest.approx(0.7)
    # the selection budgets: ICL chose among base + 2 k, RGD among base + 3 (rm, w) settings
    assert best.loc["icl", "n_candidates"] == 3 and best.loc["rgd", "n_candidates"] == 4
    with pytest.raises(ValueError, match="half"):
        results.select_rgd_w(s.drop(columns="half"))


def test_selection_table_taus_each_upstream_metric_against_rouge():
    up = pd.DataFrame({"task": "t", "policy": "m", "rm": list("abcdef"), "rm_acc": [.9, .8, .7, .6, .5, .4],
                       "reward_margin": [1, 2, 3, 4, 5, 6], "policy_acc_cumulative": [.5, .6, .7, .8, .8, .8]})
    rgd = pd.DataFrame({"task": "t", "model": "m", "rm": list("abcdef"), "rouge1": [.1, .2, .3, .4, .5, .6]})
    t = results.selection_table(up, rgd, n_boot=50).set_index("metric")
    assert t.loc["RM accuracy", "tau"] == pytest.approx(-1.0)
    assert t.loc["calibrated reward margin", "tau"] == pytest.approx(1.0)
    # six models: no percentile CI, the exact permutation p instead (a perfect ranking: 2 of 720 orders)
    assert pd.isna(t.loc["RM accuracy", "ci_lo"]) and t.loc["RM accuracy", "p_exact"] == pytest.approx(2 / 720)
    assert t.loc["policy accuracy (cumulative)", "n"] == 6
    few = results.selection_table(up.iloc[:4], rgd, n_boot=50).set_index("metric")
    assert few.tau.isna().all() and (few.status == "too small: 4 models < 5").all()


def test_generation_tables_and_icl_gap_hand_computed():
    gen = _gen_rows({("base", None, None): {"q0": .2, "q1": .2, "q2": .3, "q3": .3},
                     ("icl", None, 1.0): {"q0": .5, "q1": .5, "q2": .6, "q3": .4},
                     ("rgd", "a", 2.0): {"q0": .3, "q1": .3, "q2": .2, "q3": .2}}).assign(model="smollm2-135m")
    t = results.generation_tables(gen, n_boot=20, seed=0)
    assert len(t["summary"]) == 6 and len(t["generation_all_settings"]) == 3  # per half, then over all queries
    sweep = t["generation_all_settings"].set_index("system")
    assert sweep.loc["icl", "rouge1"] == pytest.approx(0.5) and sweep.loc["base", "n"] == 4
    assert list(t["generation_best"].columns) == results.BEST_COLUMNS
    gap = t["icl_vs_best_rgd"].iloc[0]
    assert gap.icl == pytest.approx(0.5) and gap.rgd == pytest.approx(0.2)  # test queries q2, q3
    assert gap.icl_minus_best_rgd_points == pytest.approx(30.0) and gap.params_m == 135
    # a model outside the registry has no params_m: pivot_table drops its row (kept as notebook 06 always did)
    assert results.generation_tables(gen.assign(model="m"), n_boot=20)["icl_vs_best_rgd"].empty
    ci = t["icl_vs_best_rgd_ci"].iloc[0]  # paired over the same two test queries
    assert ci.icl_minus_rgd_points == pytest.approx(30.0) and ci.n_queries == 2 and ci.icl_k == 1.0
    assert ci.ci_lo <= 30.0 <= ci.ci_hi and ci.rgd_rm == "a"
    assert t["rule_following"].empty  # no latent rules in these rows
    g5 = results.icl_gap(t["best"], by=["task", "model"], name="d")
    assert g5.index.names == ["task", "model"] and g5["d"].iloc[0] == pytest.approx(30.0)
    no_rgd = results.icl_gap(t["best"][t["best"].system != "rgd"])
    assert no_rgd["icl_minus_best_rgd_points"].isna().all()


def test_rule_table_and_user_view():
    s = pd.DataFrame({"task": ["A", "A", "B"], "model": "m", "system": ["base", "icl", "icl"], "rm": None,
                      "param": [None, 4.0, 4.0], "follows_rule": [0.5, 1.0, None]})
    r = results.rule_table(s)
    assert r.setting.tolist() == ["ICL k=4", "base"] and r.A.tolist() == [1.0, 0.5] and "B" not in r
    rows = pd.DataFrame({"user": ["u1", "u1", "u2"], "query_id": ["q1", "q1", "q2"], "system": ["base", "rgd", "base"],
                         "param": [None, 2.0, None], "rm": [None, "bt", None], "generation": "g", "reference": "r",
                         "rouge1": [0.1, 0.2, 0.3], "follows_rule": None})
    v = results.user_view(rows)
    assert v.setting.tolist() == ["base", "RGD bt w=2"] and results.user_view(rows, "u2").rouge1.tolist() == [0.3]


def test_rgd_tables_tau_of_rm_accuracy_with_rouge():
    gen = _gen_rows({("base", None, None): {"q0": .2, "q1": .2, "q2": .3, "q3": .3},
                     ("rgd", "a", 2.0): {"q0": .3, "q1": .3, "q2": .1, "q3": .1},
                     ("rgd", "b", 2.0): {"q0": .4, "q1": .4, "q2": .2, "q3": .2},
                     ("rgd", "c", 2.0): {"q0": .5, "q1": .5, "q2": .4, "q3": .4}})
    s = results.summarize(gen, n_boot=20)
    index = pd.DataFrame({"task": "t", "rm": list("abc"), "method": list("abc"), "rm_acc_seen": [.6, .7, .8],
                          "rm_acc_unseen": [.5, .5, .5]})
    rt = results.rgd_tables(s, index, "rm_acc_seen", n_boot=20)
    assert rt["rgd_selected_w"].rouge1.tolist() == pytest.approx([.1, .2, .4])
    t = rt["tau_rm_rouge"].iloc[0]  # three reward models: below the minimum, no number
    assert t.n == 3 and pd.isna(t.tau) and t.status == "too small: 3 models < 5"
    assert rt["tau_rm_rouge_all"].n.iloc[0] == 3
    assert results.rgd_tables(s[s.system != "rgd"], index) == {}
