"""lib/core/workload.py: a profile's work counted from its parameters, and the wall time estimated from rates.

The profile is a small hand-made one, read the way Make reads a profile (the notebooks' declared defaults under
its values); every expected count below is worked out by hand from its numbers."""
from __future__ import annotations

import copy

import pytest

from lib.core import workload

TINY = """
common: {profile: tiny, seed: 0}
notebooks:
  01_build_pref_lamp: {corpus: lamp, tasks: [LaMP-4, LaMP-7], max_users: 3, max_pairs_per_user: 4,
                       rejected: policy, max_new_tokens: 5}
  02_train_reward_models:
    tasks: [LaMP-4, LaMP-7]
    synthetic_prefsets: []
    pref_datasets: {prism: {}}
    methods: [bt, pal]
    backbones: [minilm-l6, smollm2-135m]
    seeds: [0]
    prefix_train_options: [false, true]
    lora_backbones: [smollm2-135m]
    lora_hparams: {epochs: 2, batch_size: 8, lr: 0.0001, weight_decay: 0.0, lora_r: 8}
  03_reward_guided_decoding: {policies: [smollm2-135m], n_queries: 2, ws: [0.1, 1.0], max_new_tokens: 4}
  04_policy_accuracy: {policies: [smollm2-135m, gemma3-270m], rm_backbones: null, max_pairs_per_group: 3}
  05_generation: {policies: [smollm2-135m], tasks: [LaMP-4, LaMP-7], queries_per_user: 2, icl_ks: [1, 2],
                  rgd_rms: method_picks, rm_backbones: null, max_new_tokens: 6}
"""


@pytest.fixture(scope="module")
def params(tmp_path_factory):
    d = tmp_path_factory.mktemp("configs")
    (d / "tiny.yaml").write_text(TINY)
    return workload.profile_params("tiny", configs_dir=d)


def units(parts):
    return {(p["notebook"][:2], p["part"]): p["units"] for p in parts}


def test_counts_of_a_hand_made_profile(params):
    # 3 users x 4 pairs = 12 pairs per task, 24 in all; LaMP-7 has 12
    assert units(workload.count_work(params)) == {
        ("01", "rejected responses"): 24 * 5,                 # one rejected response per pair, 5 tokens
        ("01", "LaMP-7 paraphrases"): 12 * 5,                 # one paraphrase per LaMP-7 pair
        ("02", "frozen-backbone features"): 24 * 2 * 2,       # 2 responses, 2 backbones
        ("02", "LoRA reward models"): 2 * 24 * 2 * (3 * 2 + 1),  # 1 backbone x 2 methods x 1 seed; 2 epochs x 3 + 1
        ("03", "greedy"): 1 * 2 * 4,                           # 1 policy x 2 queries x 4 tokens
        ("03", "RGD"): 8 * 2 * 2,                              # x 2 methods x 2 ws
        ("04", "teacher-forced responses"): 2 * 3 * 2 * 3 * 2 * 3,  # policies, datasets (2 tasks + prism), groups,
                                                                    # pairs per group, responses, 3 backbone groups
        ("05", "base + ICL"): (1 * 2 * 3 * 2) * (1 + 2) * 6,  # 12 queries x (base + 2 ICL k) x 6 tokens
        ("05", "RGD"): 12 * 2 * 1 * 6,                         # method_picks: one reward model per method, deployed w
    }


def test_counts_follow_the_options(params):
    p = copy.deepcopy(params)
    p["05_generation"]["rgd_rms"] = "all"             # every RM of the zoo: 2 methods x 1 seed x (2 x 2 + 1 LoRA)
    p["05_generation"]["rgd_ws"] = [0.5, 1.0, 2.0]    # x 3 ws instead of the deployed one
    p["04_policy_accuracy"]["rm_backbones"] = "policy"  # one backbone group
    p["01_build_pref_lamp"]["rejected"] = "other_user"  # no rejected generation
    u = units(workload.count_work(p))
    assert u[("05", "RGD")] == 12 * 10 * 3 * 6
    assert u[("04", "teacher-forced responses")] == 2 * 3 * 2 * 3 * 2
    assert u[("01", "rejected responses")] == 0 and u[("01", "LaMP-7 paraphrases")] == 60


@pytest.mark.parametrize("nb, key", [("04_policy_accuracy", "max_pairs_per_group"), ("01_build_pref_lamp", "max_users")])
def test_an_uncapped_count_is_an_error_naming_the_parameter(params, nb, key):
    p = copy.deepcopy(params)
    p[nb][key] = None
    with pytest.raises(ValueError, match=f"{nb}.{key}"):
        workload.count_work(p)


def test_estimate_divides_by_the_rates_and_shards_only_05(params):
    rates = {"greedy": 10.0, "rgd": 4.0, "teacher_forced": 2.0}
    df = workload.estimate(workload.count_work(params), rates, gpus=8).set_index("notebook")
    assert list(df.index) == [*workload.COUNTED, "total"]
    h05 = (216 / 10 + 144 / 4) / 3600
    assert df.loc["05_generation", "hours_1gpu"] == pytest.approx(h05)
    assert df.loc["05_generation", "hours_8gpu"] == pytest.approx(h05 / 8)
    assert df.loc["04_policy_accuracy", "hours_8gpu"] == df.loc["04_policy_accuracy", "hours_1gpu"] == \
        pytest.approx(216 / 2 / 3600)
    assert df.loc["04_policy_accuracy", "gpus_used_of_8"] == 1
    assert df.loc["total", "hours_1gpu"] == pytest.approx(df.hours_1gpu.drop("total").sum())
    assert df.loc["total", "hours_8gpu"] == pytest.approx(df.loc["total", "hours_1gpu"] - h05 * 7 / 8)
    with pytest.raises(ValueError, match="rgd"):
        workload.estimate(workload.count_work(params), {**rates, "rgd": 0.0})


def test_the_paper_profile_is_countable():
    parts = workload.count_work(workload.profile_params("paper"))
    assert {p["notebook"] for p in parts} == set(workload.COUNTED) and all(p["units"] > 0 for p in parts)
