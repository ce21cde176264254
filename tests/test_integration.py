"""The whole chain 01 -> 06 through lib functions, on the tiny random models, in a temporary data root.

synthetic LaMP corpus -> Pref-LaMP (a fake paraphraser through the generation cache) -> features of the tiny
policy's hidden states -> a 2-method RM zoo -> RGD sweep (03) -> policy accuracy (04) -> base / ICL / RGD
generations (05) -> tables and summary (06); every artifact is checked for shape and sanity (lib.report.sanity).
"""
from __future__ import annotations

import pandas as pd
import pytest

from lib import rewards
from lib.core import config, schema
from lib.core.io import write_text
from lib.data import gencache, preflamp, synthetic
from lib.evaluation import generation, selection, sweep
from lib.report import markdown, plots, results, sanity
from lib.rewards import rm_checks

from _tiny import tiny_lm, tiny_tokenizer

TASKS = ["LaMP-4", "LaMP-7"]
POLICY = "tiny"  # the reward models live on the policy's own hidden states (RGD path a)
METHODS = ["bt", "individual"]
HPARAMS = {"epochs": 20, "batch_size": 16, "lr": 0.01, "weight_decay": 0.0, "val_frac": 0.15, "min_val": 8,
           "fixed_epochs": 20, "patience": 5, "retries": 1}


def fake_paraphrase(prompts: list[str]) -> list[str]:
    """A deterministic stand-in for the policy's paraphrase of a tweet (never contains the tweet)."""
    return [f"someone posted {len(p.split())} words about their day" for p in prompts]


@pytest.fixture(scope="module")
def tiny():
    tok = tiny_tokenizer()
    tok.padding_side = "left"
    return tiny_lm(tok, seed=0), tok


def build_preflamp(P) -> dict:
    """01: synthetic corpus -> Pref-LaMP, the LaMP-7 inputs through the resumable generation cache."""
    synthetic.write_synthetic_lamp(P.raw / "synthetic", tasks=TASKS, n_users=8, profile_size=6, queries_per_user=2,
                                   seed=0, splits=("dev",))
    gen = gencache.cached_generator(fake_paraphrase, P.cache / "generations" / "fake.jsonl", key="fake", batch_size=8)
    return preflamp.build(P.raw / "synthetic", P.preflamp, generator=gen, corpus="synthetic", tasks=TASKS,
                          split="dev", max_pairs_per_user=6, rejected="other_rule", seed=0)


def train_rms(P, policy, tok) -> tuple[pd.DataFrame, pd.DataFrame]:
    """02: features of every task's pairs, the zoo, index.csv and accuracy.csv."""
    from lib.rewards.features import LMFeaturizer

    data = {t: preflamp.load_pairs(P.preflamp, t) for t in TASKS}
    fz = LMFeaturizer(policy, tok, name=POLICY)
    rows, correct = [], {}
    for t, recs in data.items():
        pf = rewards.PairFeatures.compute(fz, recs, cache_dir=P.cache / "features", progress=False)
        r, c = rewards.train_zoo(recs, pf, t, P.rms, methods=METHODS, seeds=[0], prefix_options=[False],
                                 hparams=HPARAMS, adapt_kw={"steps": 20, "lr": 0.05, "l2": 0.01}, n_resamples=50,
                                 progress=False)
        rows += r
        correct |= c
        checks = rm_checks.reload_check(pd.DataFrame(r), P.rms, recs, pf, t, POLICY, seed=0)
        assert checks.method.tolist() == METHODS and checks["after reload"].between(0, 1).all()
    index = pd.DataFrame(rows)
    write_text(P.rms / "index.csv", index.to_csv(index=False))
    table = rewards.accuracy_table(index, correct, n_resamples=50, seed=0)
    rm_checks.write_accuracy(table, P.rms)
    return index, table


def test_pipeline_01_to_06(tmp_path, monkeypatch, tiny):
    monkeypatch.setenv("PRC_ROOT", str(tmp_path))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    P = config.paths("smoke", tmp_path)
    policy, tok = tiny

    # 01 Pref-LaMP: 8 users per task, 2 unseen (prefdata.user_groups), every kept user with train and test pairs
    manifest = build_preflamp(P)
    counts = preflamp.counts_table(manifest).set_index("task")
    assert list(counts.index) == TASKS and (counts.users_in_lamp == 8).all()
    assert (counts.unseen_users == (counts.users * 0.25).round().clip(lower=1)).all()
    assert (counts.seen_users + counts.unseen_users == counts.users).all() and (counts.pairs > counts.train_pairs).all()
    assert (P.cache / "generations" / "fake.jsonl").exists()  # the LaMP-7 inputs went through the cache

    # 02 reward models: one per method and task, accuracies in [0, 1], the accuracy artifact reads back
    index, table = train_rms(P, policy, tok)
    assert len(index) == len(TASKS) * len(METHODS) and index.rm_acc_seen.between(0, 1).all()
    pd.testing.assert_frame_equal(rm_checks.read_accuracy(P.rms), table)
    times = rm_checks.train_time_table(index)
    assert times.method.tolist() == sorted(METHODS) and (times[f"mean ({POLICY})"] >= 0).all()

    # 03 RGD sweep of one seen user, raw rewards: greedy + 2 methods x 2 w per query
    user, qs = sweep.pick_user(preflamp.load_queries(P.preflamp, "LaMP-4"), None, n_queries=2)
    rms, scales = sweep.load_method_rms(P.rms, "LaMP-4", [POLICY], "policy", calibrated=False)
    assert sorted(scales.method) == sorted(METHODS) and (scales.cal_sd > 0).all()
    rows, path = sweep.decode_sweep(policy, tok, POLICY, rms, qs, user, [0.3, 3.0], k=4, max_new_tokens=6)
    dec = sweep.score_decodes(rows, qs, "LaMP-4", user, calibrated=False)
    write_text(P.rgd / "decodes.csv", dec.to_csv(index=False))
    dec = schema.read_decodes(P.rgd / "decodes.csv")
    assert path == "shared" and len(dec) == len(qs) * len(METHODS) * 3 and dec.rouge1.between(0, 1).all()
    assert dec.follows_rule.dtype == bool and set(dec.user) == {user}
    fig, name = plots.plot_rgd_sweep(dec)
    assert name == "rgd_w_sweep_raw_LaMP-4"

    # 04 policy accuracy on the test pairs of every task, w selected on the val half
    rm_index = rewards.read_rm_index(P.rms / "index.csv")
    rm_pairs, pol_pairs = selection.score_selection(P, [POLICY], TASKS, rm_index, [0.0, 1.0],
                                                    ("cumulative", "rgd_likelihood"), rgd_k=4,
                                                    load_model=lambda name: (policy, tok), batch_size=8)
    test_ids = {p["pair_id"] for p in preflamp.load_pairs(P.preflamp) if p["split"] == "test"}
    assert set(rm_pairs.pair_id) == test_ids and set(pol_pairs.half) == {"val", "test"}
    assert len(pol_pairs) == len(rm_pairs) * 2 * 2 * 2  # definitions x normalise x ws
    tables = selection.policy_tables(rm_pairs, pol_pairs, rm_index, n_boot=50, seed=0, fixed_w=False,
                                     deploy_definition="cumulative")
    schema.write_results(tables["policy_accuracy"], P.eval / "policy_accuracy.csv")
    assert tables["policy_accuracy"].policy_acc.dropna().between(0, 1).all()
    deployed = tables["deployed"].assign(calibrated=True, rgd_k=4, rm_backbones="policy")
    # the toy needs both kinds of deployed setting: one reward model steering, one left at the base policy
    lamp4 = deployed.task == "LaMP-4"
    deployed.loc[lamp4, "w"] = [1.0 if i % 2 else 0.0 for i in range(int(lamp4.sum()))]
    deployed["w_decode"] = deployed.w / deployed.step_scale
    schema.write_results(deployed, P.eval / "deployed_settings.csv")

    # 05 base / ICL / RGD generations of every query, each reward model at notebook 04's deployed setting
    params = dict(seed=0, tasks=["LaMP-4"], queries_per_user=1, icl_ks=[1], icl_retriever="bm25", icl_max_tokens=128,
                  rgd_ws="deployed", rgd_rms="all", calibrated=True, rgd_k=4, rm_methods=None, rm_backbones="policy",
                  rm_seeds=None, rm_prefix_train=None, unknown_users="error", max_new_tokens=6, batch_size=8,
                  rgd_batch_size=16, user_block=8)
    queries = generation.generation_queries(P, params)
    frame = generation.generate_policy_rows(P, POLICY, policy, tok, rm_index, params, progress=False)
    gen = generation.finish_generations([frame], queries, seed=0)
    schema.write_results(gen, P.eval / "generations.csv")
    n_users = manifest["tasks"]["LaMP-4"]["users"]
    assert len(queries) == n_users and gen.groupby("system").size().to_dict() == \
        {"base": n_users, "icl": n_users, "rgd": n_users * len(METHODS)}
    # one setting per reward model, the same in both artifacts: 05's RGD rows carry 04's deployed w
    back = schema.read_results(P.eval / "generations.csv")
    dep = pd.read_csv(P.eval / "deployed_settings.csv")
    dep = dep[(dep.task == "LaMP-4") & (dep.policy == POLICY)].set_index("rm").w
    rgd = back[back.system == "rgd"]
    assert rgd.groupby("rm").param.nunique().eq(1).all()
    assert rgd.groupby("rm").param.first().to_dict() == dep.to_dict()
    base = back[back.system == "base"].set_index("query_id").generation
    for rm, w in dep.items():  # w = 0 is the base policy exactly; the steering ones were decoded
        g = rgd[rgd.rm == rm].set_index("query_id").generation
        if w == 0:
            assert g.to_dict() == base.reindex(g.index).to_dict()

    # 06 tables and summary from the artifacts
    gen_tables = results.generation_tables(schema.read_results(P.eval / "generations.csv"), n_boot=50, seed=0)
    assert set(gen_tables["best"].system) == {"base", "icl", "rgd"}
    summary = markdown.summary_markdown("smoke", manifest["corpus"], [POLICY], tables["tau_rm_policy"],
                                      gen_tables["generation_best"], gen_tables["icl_vs_best_rgd_ci"])
    write_text(P.figures / "summary.md", summary)

    checks = sanity.check_run("smoke", tmp_path).set_index(["artifact", "check"])
    # a random 32-d policy writes unrelated words: ROUGE may be 0 and RM accuracies may tie
    quality = {("eval/generations.csv", "ROUGE-1 in [0, 1], not all zero"),
               *[(f"rms/{t}", "RM accuracy not constant across models") for t in TASKS]}
    failed = checks[~checks.ok].drop(index=list(quality), errors="ignore")
    assert failed.empty, failed.to_string()
    assert len(checks) >= 20
