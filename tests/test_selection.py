"""Notebook 04 as functions (lib/evaluation/selection.py): scoring pairs on tiny models, halves, selecting w, the tables."""
import numpy as np
import pandas as pd
import pytest
import torch

from lib.evaluation import policy_accuracy, selection

from test_rgd import PROMPTS, USERS, _lm, _rm, tok  # noqa: F401 (fixture)

RESPONSES = ["stock market rises today", "rain and sun", "a new deep learning method"]
REJECTED = ["the cat sat on the mat", "news today", "music film game"]


@pytest.fixture(scope="module")
def policy(tok):
    return _lm(tok, 0)


def test_score_pairs_rm_outcome_and_policy_outcome_per_w(tok, policy):
    pairs = [{"pair_id": f"p{i}", "prompt": p, "chosen": c, "rejected": r, "user": u}
             for i, (p, c, r, u) in enumerate(zip(PROMPTS, RESPONSES, REJECTED, USERS))]
    rm = _rm("shared")
    rms = {"a": rm}
    r_df, p_df = selection.score_pairs(policy, tok, rms, pairs, [0.0, 1.0], ["cumulative"], k=5, policy_name="tiny",
                                       step_calibration=False)
    tc = policy_accuracy.teacher_forced(policy, tok, rm, PROMPTS, RESPONSES, USERS, k=5, policy_name="tiny", progress=False)
    tr = policy_accuracy.teacher_forced(policy, tok, rm, PROMPTS, REJECTED, USERS, k=5, policy_name="tiny", progress=False)
    margin = np.array([c.r_gold[-1] - r.r_gold[-1] for c, r in zip(tc, tr)])
    np.testing.assert_allclose(r_df.reward_margin, margin, atol=1e-4)
    assert list(r_df.rm_correct) == [1.0 if m > 0 else 0.0 for m in margin]
    assert len(p_df) == len(pairs) * 2 * 2  # pairs x normalise x w
    w1 = p_df[(p_df.w == 1.0) & ~p_df.normalise]
    expect = [float(c.logp.sum() + c.r_gold.sum() > r.logp.sum() + r.r_gold.sum()) for c, r in zip(tc, tr)]
    assert list(w1.correct) == expect
    assert (p_df[p_df.w == 0].kl.abs() < 1e-12).all() and (p_df[p_df.w == 1].kl > 0).all()  # KL from the base policy
    assert set(r_df.step_scale) == {1.0} and r_df.oos_chosen.dtype == bool
    # step calibration: the nominal w is divided by the within-step spread, measured on the pairs given
    r2, p2 = selection.score_pairs(policy, tok, rms, pairs, [0.0, 1.0], ["cumulative"], k=5, policy_name="tiny",
                                   scale_ids={"p0", "p1"})
    scale = policy_accuracy.step_scale(tc[:2] + tr[:2])
    assert r2.step_scale.iloc[0] == pytest.approx(scale)
    expect = [float(c.logp.sum() + c.r_gold.sum() / scale > r.logp.sum() + r.r_gold.sum() / scale) for c, r in zip(tc, tr)]
    assert list(p2[(p2.w == 1.0) & ~p2.normalise].correct) == expect


def test_split_halves_is_a_fixed_seeded_partition():
    ids = [f"t/u{i}/{j}" for i in range(5) for j in range(4)]
    h = selection.split_halves(ids, seed=0)
    assert set(h) == set(ids) and sum(v == "val" for v in h.values()) == 10
    assert h == selection.split_halves(list(reversed(ids)), seed=0)  # order of the input does not matter
    assert h != selection.split_halves(ids, seed=1)


def _pp(rows):
    import pandas as pd

    df = pd.DataFrame(rows, columns=["task", "policy", "rm", "user_group", "definition", "normalise", "w", "pair_id",
                                     "half", "correct"])
    return df.assign(kl=df.w * 0.1, user=df.pair_id.str[:2])


def _rm_meta(names, methods=None):
    return pd.DataFrame({"task": "t", "policy": "p", "rm": names, "step_scale": 2.0,
                         "method": methods or list(names), "pair_id": "v0"})


def test_deployed_settings_pick_the_best_val_w_ties_to_the_smaller_and_can_pick_zero():
    rows = []
    # rm a: w=1 best on val (2/2), w=2 also 2/2 -> tie -> 1; rm b: nothing beats w=0 on val
    for rm, acc in {"a": {0.0: [0, 0], 1.0: [1, 1], 2.0: [1, 1]}, "b": {0.0: [0, 0], 1.0: [0, 0], 2.0: [0, 0]}}.items():
        for w, cs in acc.items():
            for i, c in enumerate(cs):
                rows.append(("t", "p", rm, "seen", "cumulative", False, w, f"v{i}", "val", c))
                rows.append(("t", "p", rm, "seen", "cumulative", False, w, f"t{i}", "test", 1 - c))  # test never used to select
    dep = selection.deployed_settings(_pp(rows), _rm_meta(["a", "b"], ["bt", "bt"]), "cumulative").set_index("rm")
    assert dep.loc["a", "w"] == 1.0 and dep.loc["a", "val_acc"] == 1.0 and dep.loc["a", "val_base_acc"] == 0.0
    assert dep.loc["b", "w"] == 0.0  # a reward model that does not help is deployed as the base policy
    assert dep.loc["a", "w_decode"] == 0.5 and dep.loc["a", "val_kl"] == pytest.approx(0.1)  # w / step_scale
    assert dep.method_pick.to_dict() == {"a": True, "b": False}  # one pick per method: the best on val
    at = selection.at_deployed(_pp(rows), dep.reset_index())
    assert set(zip(at.rm, at.w)) == {("a", 1.0), ("b", 0.0)} and set(at.half) == {"val", "test"}
    with pytest.raises(ValueError, match="no val-half outcomes for definition 'rgd_likelihood_smoothed'"):
        selection.deployed_settings(_pp(rows), _rm_meta(["a", "b"]))


def test_matched_kl_takes_the_grid_w_nearest_each_target_on_a_log_scale():
    rows = [("t", "p", "a", "seen", "cumulative", False, w, "v0", "val", 1) for w in (0.0, 0.5, 1.0, 2.0)]
    pp = _pp(rows)  # kl = 0.1 w: 0.05, 0.1, 0.2
    mk = selection.matched_kl(pp, [0.1, 0.12, 0.15, 1.0]).set_index("kl_target")
    assert mk.w.to_dict() == {0.1: 1.0, 0.12: 1.0, 0.15: 2.0, 1.0: 2.0}  # log(0.2/0.15) < log(0.15/0.1); 1.0: the largest


def test_tau_table_pairs_excludes_degenerate_models_and_checks_alignment():
    import pandas as pd

    pairs = [f"p{j}" for j in range(6)]
    rm_rows, pol_rows = [], []
    accs = {"m1": [1, 1, 1, 1, 1, 0], "m2": [1, 1, 1, 0, 0, 0], "m3": [1, 0, 0, 0, 0, 0], "m4": [0.5] * 6}
    for rm, cs in accs.items():
        for j, c in enumerate(cs):
            rm_rows.append({"task": "t", "policy": "p", "user_group": "seen", "rm": rm, "method": rm, "pair_id": pairs[j],
                            "user": f"u{j}", "half": "test", "rm_correct": c, "reward_margin": 0.0,
                            "degenerate": "constant rewards" if rm == "m4" else ""})
            pol_rows.append(("t", "p", rm, "seen", "cumulative", False, 1.0, pairs[j], "test", c))
    small = {"models": 3, "pairs": 6, "users": 2}
    out = selection.tau_table_pairs(pd.DataFrame(rm_rows), _pp(pol_rows), n_boot=200, minimums=small)
    r = out.iloc[0]
    assert r.n == 3 and r.n_excluded == 1 and r.tau == pytest.approx(1.0)  # identical orderings
    assert r.n_pairs == 6 and r.n_users == 6
    # 3 models on 6 pairs: many resamples draw one model thrice or constant pairs; the CI is refused, and says why
    assert np.isnan(r.ci_lo) and r.status == f"no CI: {r.n_degenerate} of 200 resamples constant" and r.n_degenerate > 10
    # below the documented minimum sizes the cell has no number, and says why
    tiny = selection.tau_table_pairs(pd.DataFrame(rm_rows), _pp(pol_rows), n_boot=200).iloc[0]
    assert np.isnan(tiny.tau) and "too small" in tiny.status and "6 pairs < 20" in tiny.status
    by_method = selection.tau_table_pairs(pd.DataFrame(rm_rows), _pp(pol_rows).assign(method=lambda d: d.rm),
                                          level="method", n_boot=200, minimums=small).iloc[0]
    assert np.isnan(by_method.ci_lo) and 0 < by_method.p_exact <= 1  # a handful of methods: exact p, no bootstrap CI
    with pytest.raises(ValueError, match="several w"):
        selection.tau_table_pairs(pd.DataFrame(rm_rows), pd.concat([_pp(pol_rows), _pp(pol_rows).assign(w=2.0)]))


def test_accuracy_rows_reads_the_base_reference_from_the_full_table():
    import pandas as pd

    rows = []
    for w, cs in {0.0: [1, 0, 0, 0], 2.0: [1, 1, 1, 0]}.items():
        for j, c in enumerate(cs):
            rows.append(("t", "p", "a", "seen", "cumulative", False, w, f"p{j}", "test", c))
    full = _pp(rows)
    rm = pd.DataFrame({"task": "t", "policy": "p", "user_group": "seen", "rm": "a", "pair_id": [f"p{j}" for j in range(4)],
                       "half": "test", "rm_correct": [1, 1, 0, 0], "reward_margin": [1.0, 0.5, -1.0, -2.0]})
    at_sel = full[full.w == 2.0]  # only the deployed w: no w = 0 rows left
    out = selection.accuracy_rows(rm, at_sel, base_pairs=full).iloc[0]
    assert out.policy_acc == 0.75 and out.base_acc == 0.25 and out.rm_acc == 0.5 and out.reward_margin == -0.375
    assert pd.isna(selection.accuracy_rows(rm, at_sel).iloc[0].base_acc)  # without it there is no reference
    # the reference is computed per definition: the base policy under rgd_likelihood is another number
    other = full.assign(definition="rgd_likelihood", correct=[1, 1, 0, 0, 1, 1, 1, 1])
    both = selection.accuracy_rows(rm, pd.concat([full, other]))
    base = both[both.w == 2.0].set_index("definition").base_acc
    assert base.to_dict() == {"cumulative": 0.25, "rgd_likelihood": 0.5}


# ----------------------------------------------------------------------------- policy_tables
def _outcomes():
    """Two reward models on 2 val + 4 test pairs, w in {0, 1}: a helps (deployed at w = 1), b does not (w = 0)."""
    base = {"v0": 0, "v1": 0, "t0": 1, "t1": 0, "t2": 0, "t3": 0}  # the base policy (w = 0), the same for a and b
    at1 = {"a": {"v0": 1, "v1": 1, "t0": 1, "t1": 1, "t2": 1, "t3": 0},
           "b": {"v0": 0, "v1": 0, "t0": 0, "t1": 0, "t2": 0, "t3": 1}}
    rm_ok = {"a": [1, 1, 1, 1, 1, 0], "b": [0, 0, 1, 0, 0, 0]}
    pol, rm = [], []
    for name in ("a", "b"):
        for i, pid in enumerate(base):
            half = "val" if pid.startswith("v") else "test"
            rm.append(("t", "p", name, pid, f"u{i}", rm_ok[name][i], 0.1 * i, 1.0, i == 0, False, "seen", half))
            for w, c in ((0.0, base[pid]), (1.0, at1[name][pid])):
                for d in ("cumulative", "rgd_likelihood"):
                    pol.append(("t", "p", name, pid, f"u{i}", d, False, w, c, 0.2 * w, "seen", half))
    rm_pairs = pd.DataFrame(rm, columns=["task", "policy", "rm", "pair_id", "user", "rm_correct", "reward_margin",
                                         "step_scale", "oos_chosen", "oos_rejected", "user_group", "half"])
    pol_pairs = pd.DataFrame(pol, columns=["task", "policy", "rm", "pair_id", "user", "definition", "normalise", "w",
                                           "correct", "kl", "user_group", "half"])
    index = pd.DataFrame({"task": "t", "rm": ["a", "b"], "method": ["bt", "vpl"], "backbone": "x", "seed": 0,
                          "prefix_train": False, "degenerate": ""})
    return rm_pairs.merge(index, on=["task", "rm"]), pol_pairs, index


SMALL = {"models": 2, "pairs": 4, "users": 2}


def test_policy_tables_hand_computed():
    rm_pairs, pol_pairs, index = _outcomes()
    t = selection.policy_tables(rm_pairs, pol_pairs, index, n_boot=20, seed=0, kl_targets=[0.2], minimums=SMALL,
                                deploy_definition="rgd_likelihood")
    dep = t["policy_accuracy_deployed"]
    sel = dep[dep.definition == "cumulative"].set_index("rm")
    assert sel.w_deployed.to_dict() == {"a": 1.0, "b": 0.0}  # b: nothing beats w = 0 on val (tie -> smaller w)
    assert sel.policy_acc.to_dict() == {"a": 0.75, "b": 0.25}  # test half at the deployed w
    assert sel.rm_acc.to_dict() == {"a": 0.75, "b": 0.25} and set(sel.base_acc) == {0.25}
    assert sel.method.to_dict() == {"a": "bt", "b": "vpl"} and sel.oos_chosen.to_dict() == {"a": 0.0, "b": 0.0}
    # one setting per reward model for every definition: the rgd_likelihood rows sit at the same w
    assert dep.groupby("rm").w_deployed.nunique().eq(1).all()
    assert set(t["deployed"].method_pick) == {True}  # one reward model per method here
    assert t["base_ranking_accuracy"].base_acc.tolist() == [0.25, 0.25]
    by_m = t["policy_accuracy_by_method"].set_index(["definition", "method"])
    assert by_m.loc[("cumulative", "bt"), "w_deployed"] == 1.0 and by_m.loc[("cumulative", "vpl"), "policy_acc"] == 0.25
    pa = t["policy_accuracy"].set_index(["definition", "rm", "w"]).policy_acc
    assert pa[("cumulative", "a", 0.0)] == pa[("cumulative", "b", 0.0)] == 0.25
    main = t["tau_rm_policy"]
    rm_level = main[main.level == "rm"]
    assert rm_level.tau.tolist() == pytest.approx([1.0, 1.0]) and rm_level.n.tolist() == [2, 2]
    assert rm_level.n_pairs.tolist() == [4, 4] and rm_level.status.isin(["", *[f"no CI: {n} of 20 resamples constant"
                                                                              for n in range(21)]]).all()
    vs_w = t["tau_rm_policy_vs_w"]
    assert set(vs_w.w) == {1.0} and vs_w.tau.iloc[0] == pytest.approx(1.0)  # no tau at w = 0
    kl = t["kl_vs_w"].set_index(["rm", "w"]).kl
    assert kl[("a", 1.0)] == pytest.approx(0.2) and kl[("a", 0.0)] == 0
    assert set(t["tau_rm_policy_at_kl"].kl_target) == {0.2}
    only = selection.policy_tables(rm_pairs, pol_pairs, index, n_boot=20, fixed_w=False, minimums=SMALL,
                                  deploy_definition="cumulative")
    assert set(only["tau_rm_policy_all"].w) == {"deployed"}
    # at the default minimum sizes four test pairs are too small for a tau
    default = selection.policy_tables(rm_pairs, pol_pairs, index, n_boot=20, fixed_w=False,
                                      deploy_definition="cumulative")["tau_rm_policy"]
    assert default.tau.isna().all() and default.status.str.startswith("too small").all()


def test_test_pairs_and_dataset_pairs(tmp_path):
    from lib.core.config import paths
    from lib.core.io import write_jsonl

    pairs = [{"pair_id": f"p{i}", "split": "test" if i % 2 else "train", "user_group": "unseen" if i > 4 else "seen"}
             for i in range(9)]
    assert [p["pair_id"] for p in selection.test_pairs(pairs)] == ["p1", "p3", "p5", "p7"]
    assert [p["pair_id"] for p in selection.test_pairs(pairs, 1)] == ["p1", "p5"]
    P = paths("x", tmp_path)
    write_jsonl(P.prefsets / "tldr" / "pairs.jsonl", pairs)
    assert selection.load_dataset_pairs(P, "tldr") == pairs
    with pytest.raises(FileNotFoundError, match="notebook 01"):
        selection.load_dataset_pairs(P, "nope")


# ----------------------------------------------------------------------------- score_selection on tiny models
@torch.no_grad()
def _loglik(model, tk, prompt, response):
    from lib.core import models

    x = models.prompt_ids(tk, prompt)
    y = tk(response, add_special_tokens=False)["input_ids"] + [tk.eos_token_id]
    lp = torch.log_softmax(model(input_ids=torch.tensor([x + y])).logits[0, len(x) - 1 : -1].float(), -1)
    return float(lp.gather(1, torch.tensor(y)[:, None]).sum())


@pytest.mark.slow
def test_score_selection_on_tiny_models(tmp_path, monkeypatch):
    from test_shard import POLICY, _setup

    from lib import rewards
    from lib.core.config import paths

    from _tiny import tiny_lm, tiny_tokenizer

    torch.set_num_threads(1)
    tok_ = tiny_tokenizer()
    model = tiny_lm(tok_)
    model.registry_name = POLICY
    root = tmp_path / "root"
    _setup(root, model, tok_)
    monkeypatch.setenv("PRC_ROOT", str(root))
    P = paths("tiny")
    index = rewards.read_rm_index(P.rms / "index.csv")
    loaded = []
    rm_pairs, pol_pairs = selection.score_selection(
        P, [POLICY], ["LaMP-4"], index, [0.0, 1.0], ["cumulative", "rgd_likelihood"], rgd_k=4, batch_size=4,
        load_model=lambda name: loaded.append(name) or (model, tok_))
    assert loaded == [POLICY]
    # 6 users x 2 test pairs; 2 reward models (bt, individual); 2 definitions x 2 normalisations x 2 w
    assert len(rm_pairs) == 2 * 12 and len(pol_pairs) == 2 * 12 * 2 * 2 * 2
    assert {"task", "policy", "rm", "pair_id", "rm_correct", "reward_margin", "user_group", "half", "method",
            "backbone", "seed", "prefix_train", "degenerate"} <= set(rm_pairs.columns)
    assert set(rm_pairs.rm) == {"bt/tiny-llama/s0", "individual/tiny-llama/s0"} and set(rm_pairs.task) == {"LaMP-4"}
    halves = rm_pairs.drop_duplicates("pair_id").half.value_counts().to_dict()
    assert halves == {"val": 6, "test": 6}
    groups = rm_pairs.drop_duplicates("pair_id").user_group.value_counts().to_dict()
    assert groups == {"seen": 8, "unseen": 4}  # new1 was unknown to the saved models: adapted on loading
    # w = 0 of the cumulative raw score is the base policy's likelihood ranking, the same for every reward model
    base = pol_pairs[(pol_pairs.w == 0) & (pol_pairs.definition == "cumulative") & ~pol_pairs.normalise]
    per_rm = base.pivot_table(index="pair_id", columns="rm", values="correct")
    assert (per_rm.nunique(axis=1) == 1).all()
    from lib.data.preflamp import load_pairs

    by_id = {p["pair_id"]: p for p in load_pairs(P.preflamp, "LaMP-4")}
    expect = {i: float(_loglik(model, tok_, by_id[i]["prompt"], by_id[i]["chosen"])
                       > _loglik(model, tok_, by_id[i]["prompt"], by_id[i]["rejected"])) for i in per_rm.index}
    assert per_rm.iloc[:, 0].to_dict() == expect


def test_tau_cells_equal_the_per_cell_computation_small_or_not():
    """tau_table_pairs skips the tables of cells below the minimum sizes; every row still equals kendall_tau_hier_ci
    on that cell's [models x pairs] outcomes (pivot tables), the too-small cells and the ones with a tau alike."""
    from lib.evaluation import tau_stats

    rng = np.random.default_rng(1)
    rms = [f"{m}/bb/s{s}" for m in ("bt", "vpl", "pal") for s in range(2)]
    rows_r, rows_p = [], []
    for task, n_pairs in (("big", 30), ("small", 8)):
        for rm in rms:
            for i in range(n_pairs):
                pid, user = f"{task}{i}", f"u{i % 5}"
                base = dict(task=task, policy="p", rm=rm, pair_id=pid, user=user, user_group="seen", half="test",
                            method=rm.split("/")[0])
                rows_r.append(base | {"rm_correct": float(rng.random() < 0.6)})
                rows_p.append(base | {"definition": "d", "normalise": False, "correct": rng.choice([0.0, 0.5, 1.0])})
    rp, pp = pd.DataFrame(rows_r), pd.DataFrame(rows_p)
    got = selection.tau_table_pairs(rp, pp, n_boot=100).set_index("task")
    assert got.loc["small", "status"].startswith("too small") and got.loc["big", "status"] == ""
    for task in ("big", "small"):
        Y = pp[pp.task == task].pivot_table(index="rm", columns="pair_id", values="correct", aggfunc="mean")
        X = rp[rp.task == task].pivot_table(index="rm", columns="pair_id", values="rm_correct", aggfunc="mean")
        users = rp.drop_duplicates("pair_id").set_index("pair_id").user.reindex(Y.columns).to_numpy()
        methods = rp.drop_duplicates("rm").set_index("rm").method.reindex(Y.index).to_numpy()
        want = tau_stats.kendall_tau_hier_ci(X.reindex_like(Y).to_numpy(), Y.to_numpy(), methods, users, n_boot=100)
        assert {k: got.loc[task, k] for k in want} == pytest.approx(want, nan_ok=True)
