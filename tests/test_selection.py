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
    r_df, p_df = selection.score_pairs(policy, tok, rms, pairs, [0.0, 1.0], ["cumulative"], k=5, policy_name="tiny")
    tc = policy_accuracy.teacher_forced(policy, tok, rm, PROMPTS, RESPONSES, USERS, k=5, policy_name="tiny", progress=False)
    tr = policy_accuracy.teacher_forced(policy, tok, rm, PROMPTS, REJECTED, USERS, k=5, policy_name="tiny", progress=False)
    margin = np.array([c.r_gold[-1] - r.r_gold[-1] for c, r in zip(tc, tr)])
    np.testing.assert_allclose(r_df.reward_margin, margin, atol=1e-4)
    assert list(r_df.rm_correct) == [1.0 if m > 0 else 0.0 for m in margin]
    assert len(p_df) == len(pairs) * 2 * 2  # pairs x normalise x w
    w1 = p_df[(p_df.w == 1.0) & ~p_df.normalise]
    expect = [float(c.logp.sum() + c.r_gold.sum() > r.logp.sum() + r.r_gold.sum()) for c, r in zip(tc, tr)]
    assert list(w1.correct) == expect


def test_split_halves_is_a_fixed_seeded_partition():
    ids = [f"t/u{i}/{j}" for i in range(5) for j in range(4)]
    h = selection.split_halves(ids, seed=0)
    assert set(h) == set(ids) and sum(v == "val" for v in h.values()) == 10
    assert h == selection.split_halves(list(reversed(ids)), seed=0)  # order of the input does not matter
    assert h != selection.split_halves(ids, seed=1)


def _pp(rows):
    import pandas as pd

    return pd.DataFrame(rows, columns=["task", "policy", "rm", "user_group", "definition", "normalise", "w", "pair_id",
                                       "half", "correct"])


def test_select_w_picks_best_val_w_with_ties_to_the_smaller_and_can_pick_zero():
    rows = []
    # rm a: w=1 best on val (2/2), w=2 also 2/2 -> tie -> 1; rm b: nothing beats w=0 on val
    for rm, acc in {"a": {0.0: [0, 0], 1.0: [1, 1], 2.0: [1, 1]}, "b": {0.0: [1, 1], 1.0: [0, 1], 2.0: [0, 0]}}.items():
        for w, cs in acc.items():
            for i, c in enumerate(cs):
                rows.append(("t", "p", rm, "seen", "cumulative", False, w, f"v{i}", "val", c))
                rows.append(("t", "p", rm, "seen", "cumulative", False, w, f"t{i}", "test", 1 - c))  # test never used to select
    sel = selection.select_w(_pp(rows)).set_index("rm")
    assert sel.loc["a", "w_selected"] == 1.0 and sel.loc["a", "val_acc"] == 1.0
    assert sel.loc["b", "w_selected"] == 0.0
    at = selection.at_selected_w(_pp(rows), sel.reset_index())
    assert set(zip(at.rm, at.w)) == {("a", 1.0), ("b", 0.0)}


def test_tau_table_pairs_excludes_degenerate_models_and_checks_alignment():
    import pandas as pd

    pairs = [f"p{j}" for j in range(6)]
    rm_rows, pol_rows = [], []
    accs = {"m1": [1, 1, 1, 1, 1, 0], "m2": [1, 1, 1, 0, 0, 0], "m3": [1, 0, 0, 0, 0, 0], "m4": [0.5] * 6}
    for rm, cs in accs.items():
        for j, c in enumerate(cs):
            rm_rows.append({"task": "t", "policy": "p", "user_group": "seen", "rm": rm, "method": rm, "pair_id": pairs[j],
                            "half": "test", "rm_correct": c, "reward_margin": 0.0,
                            "degenerate": "constant rewards" if rm == "m4" else ""})
            pol_rows.append(("t", "p", rm, "seen", "cumulative", False, 1.0, pairs[j], "test", c))
    out = selection.tau_table_pairs(pd.DataFrame(rm_rows), _pp(pol_rows), n_boot=200)
    r = out.iloc[0]
    assert r.n == 3 and r.n_excluded == 1 and r.tau == pytest.approx(1.0)  # identical orderings
    assert r.ci_lo <= 1.0 and r.n_pairs == 6
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
    at_sel = full[full.w == 2.0]  # only the selected w: no w = 0 rows left
    out = selection.accuracy_rows(rm, at_sel, base_pairs=full).iloc[0]
    assert out.policy_acc == 0.75 and out.base_acc == 0.25 and out.rm_acc == 0.5 and out.reward_margin == -0.375
    assert pd.isna(selection.accuracy_rows(rm, at_sel).iloc[0].base_acc)  # without it there is no reference


# ----------------------------------------------------------------------------- policy_tables
def _outcomes():
    """Two reward models on 2 val + 4 test pairs, w in {0, 1}: a helps (selects w = 1), b does not (w = 0)."""
    base = {"v0": 0, "v1": 0, "t0": 1, "t1": 0, "t2": 0, "t3": 0}  # the base policy (w = 0), the same for a and b
    at1 = {"a": {"v0": 1, "v1": 1, "t0": 1, "t1": 1, "t2": 1, "t3": 0},
           "b": {"v0": 0, "v1": 0, "t0": 0, "t1": 0, "t2": 0, "t3": 1}}
    rm_ok = {"a": [1, 1, 1, 1, 1, 0], "b": [0, 0, 1, 0, 0, 0]}
    pol, rm = [], []
    for name in ("a", "b"):
        for i, pid in enumerate(base):
            half = "val" if pid.startswith("v") else "test"
            rm.append(("t", "p", name, pid, rm_ok[name][i], 0.1 * i, "seen", half))
            for w, c in ((0.0, base[pid]), (1.0, at1[name][pid])):
                pol.append(("t", "p", name, pid, "cumulative", False, w, c, "seen", half))
    rm_pairs = pd.DataFrame(rm, columns=["task", "policy", "rm", "pair_id", "rm_correct", "reward_margin", "user_group",
                                         "half"])
    pol_pairs = pd.DataFrame(pol, columns=["task", "policy", "rm", "pair_id", "definition", "normalise", "w", "correct",
                                           "user_group", "half"])
    index = pd.DataFrame({"task": "t", "rm": ["a", "b"], "method": ["bt", "vpl"], "backbone": "x", "seed": 0,
                          "prefix_train": False, "degenerate": ""})
    return rm_pairs.merge(index, on=["task", "rm"]), pol_pairs, index


def test_policy_tables_hand_computed():
    rm_pairs, pol_pairs, index = _outcomes()
    t = selection.policy_tables(rm_pairs, pol_pairs, index, n_boot=20, seed=0)
    sel = t["policy_accuracy_selected"].set_index("rm")
    assert sel.w_selected.to_dict() == {"a": 1.0, "b": 0.0}  # b: nothing beats w = 0 on val (tie -> smaller w)
    assert sel.policy_acc.to_dict() == {"a": 0.75, "b": 0.25}  # test half at the selected w
    assert sel.rm_acc.to_dict() == {"a": 0.75, "b": 0.25} and set(sel.base_acc) == {0.25}
    assert sel.method.to_dict() == {"a": "bt", "b": "vpl"}
    assert t["base_ranking_accuracy"].to_dict("records") == [{"task": "t", "policy": "p", "user_group": "seen",
                                                              "base_acc": 0.25}]
    by_m = t["policy_accuracy_by_method"].set_index("method")
    assert by_m.loc["bt", "w_selected"] == 1.0 and by_m.loc["vpl", "policy_acc"] == 0.25 and by_m.models.sum() == 2
    pa = t["policy_accuracy"].set_index(["rm", "w"]).policy_acc
    assert pa[("a", 0.0)] == pa[("b", 0.0)] == 0.25 and pa[("b", 1.0)] == 0.25
    main = t["tau_rm_policy"]
    assert main.level.tolist() == ["rm", "method"] and main.tau.tolist() == pytest.approx([1.0, 1.0])
    assert main.n.tolist() == [2, 2] and main.n_pairs.tolist() == [4, 4]
    vs_w = t["tau_rm_policy_vs_w"]
    assert vs_w.w.tolist() == [1.0] and vs_w.tau.iloc[0] == pytest.approx(1.0)  # no tau at w = 0
    assert len(t["tau_rm_policy_all"]) == 3
    only_sel = selection.policy_tables(rm_pairs, pol_pairs, index, n_boot=20, fixed_w=False)["tau_rm_policy_all"]
    assert set(only_sel.w) == {"selected"} and len(only_sel) == 2


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
