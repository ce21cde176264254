"""Every notebook parameter is checked before any work (lib/core/params.py): type, range, non-empty, finite,
with an error naming the profile file, the notebook, the key, the value and what is allowed."""
from __future__ import annotations

import math

import pytest
import yaml

from lib.core import params, pipeline
from lib.core.pipeline import NOTEBOOKS, declared_parameters, parameters_for

DECLARED = {p.stem: declared_parameters(p) for p in sorted(NOTEBOOKS.glob("0*.ipynb"))}
CASES = [(nb, key) for nb, keys in DECLARED.items() for key in keys]


@pytest.mark.parametrize("notebook", sorted(DECLARED))
def test_every_declared_parameter_has_a_rule(notebook):
    missing = sorted(set(DECLARED[notebook]) - set(params.RULES))
    assert not missing, f"{notebook} declares {missing} without a rule in lib/core/params.py RULES"


def test_no_rule_for_a_parameter_nobody_declares():
    assert set(params.RULES) <= set().union(*map(set, DECLARED.values()))


def _profile(tmp_path, notebook, key, value):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"notebooks": {notebook: {key: value}}}))
    return tmp_path / "bad.yaml"


@pytest.mark.parametrize("notebook,key", CASES)
def test_a_meaningless_value_of_every_parameter_is_refused_naming_it(tmp_path, notebook, key):
    bad = params.RULES[key].bad_example()
    f = _profile(tmp_path, notebook, key, bad)
    with pytest.raises((ValueError, TypeError)) as e:
        parameters_for(notebook, "bad", configs_dir=tmp_path)
    msg = str(e.value)
    assert str(f) in msg and notebook in msg and f"{key}:" in msg, msg


@pytest.mark.parametrize("notebook,key", CASES)
def test_the_notebooks_own_defaults_pass(notebook, key):
    default = pipeline._defaults(DECLARED[notebook])[key]
    assert params.RULES[key].error(default) is None, (key, default)


@pytest.mark.parametrize("notebook,key,value,says", [
    ("01_build_pref_lamp", "test_frac", 1.5, "test_frac: 1.5 is out of range; allowed: a finite number in (0, 1)"),
    ("01_build_pref_lamp", "unseen_frac", -0.5, "unseen_frac: -0.5 is out of range; allowed: a finite number in [0, 1)"),
    ("01_build_pref_lamp", "max_users", 0, "max_users: 0 is out of range; allowed: a whole number >= 2 or None"),
    ("01_build_pref_lamp", "max_pairs_per_user", 1,
     "max_pairs_per_user: 1 is out of range; allowed: a whole number >= 2 (a train and a test pair per user)"),
    ("01_build_pref_lamp", "max_source_chars", 0, "max_source_chars: 0 is out of range"),
    ("02_train_reward_models", "seeds", [], "seeds: [] is empty; allowed: a non-empty list, each a whole number >= 0"),
    ("02_train_reward_models", "methods", [], "methods: [] is empty"),
    ("02_train_reward_models", "hparams", {"epochs": 0}, "hparams: {'epochs': 0} has epochs=0 (a whole number >= 1)"),
    ("02_train_reward_models", "pref_datasets", {"tldrr": {}}, "unknown key(s) ['tldrr']"),
    ("03_reward_guided_decoding", "ws", [], "ws: [] is empty"),
    ("03_reward_guided_decoding", "ws", [1.0, math.nan], "ws: [1.0, nan] contains [nan]"),
    ("04_policy_accuracy", "batch_size", 0, "batch_size: 0 is out of range; allowed: a whole number >= 1"),
    ("04_policy_accuracy", "ws", [0.0, math.inf], "ws: [0.0, inf] contains [inf]"),
    ("04_policy_accuracy", "policies", [], "policies: [] is empty"),
    ("04_policy_accuracy", "definitions", ["likelihood"], "definitions: ['likelihood'] contains ['likelihood']"),
    ("05_generation", "max_new_tokens", 0, "max_new_tokens: 0 is out of range"),
    ("05_generation", "val_frac", 1.5, "val_frac: 1.5 is out of range"),
    ("05_generation", "rgd_ws", [math.nan], "rgd_ws: [nan] is not allowed; allowed: one of ['deployed'] or a non-empty list"),
    ("05_generation", "rgd_rms", "best", "rgd_rms: 'best' is not allowed; allowed: one of ['method_picks', 'all']"),
    ("06_figures_tables", "n_boot", 0,
     "n_boot: 0 is out of range; allowed: a whole number >= 100 (a percentile CI from fewer resamples is noise)"),
])
def test_the_settings_users_tried_get_a_clear_error(tmp_path, notebook, key, value, says):
    f = _profile(tmp_path, notebook, key, value)
    with pytest.raises(ValueError) as e:
        parameters_for(notebook, "bad", configs_dir=tmp_path)
    assert str(e.value).startswith(f"{f}, notebook {notebook}: ") and says in str(e.value), str(e.value)


def test_hand_edits_of_a_parameters_cell_are_checked_too():
    """A notebook run by hand (Colab, Jupyter) calls apply_profile with its globals: an edited cell is checked."""
    ns = pipeline._defaults(DECLARED["04_policy_accuracy"]) | {"profile": "smoke", "ws": [], "threads": 0}
    with pytest.raises(ValueError, match=r"notebook 04_policy_accuracy \(profile smoke\): ws: \[\] is empty.*"
                                         r"threads: 0 is out of range"):
        pipeline.apply_profile(ns, "04_policy_accuracy", verbose=False)


def test_vocabularies_are_the_stages_own():
    from lib.data import lamp, prefdata, preflamp
    from lib.evaluation import icl

    assert params.REJECTED == preflamp.REJECTED and params.SPLITS == lamp.SPLITS
    assert params.RETRIEVERS == icl.RETRIEVERS and params.PREF_SETS == tuple(prefdata.LOADERS)
    from lib.evaluation import policy_accuracy

    assert params.DEFINITIONS == policy_accuracy.DEFINITIONS
    with pytest.raises(ValueError, match="unknown definition 'likelihood'"):
        policy_accuracy.sequence_scores([], [0.0], definition="likelihood")


def test_library_functions_check_their_own_arguments():
    """The same rules guard the library's entry points, with the function's name in the error."""
    import numpy as np

    from lib.core.stats import bootstrap_ci
    from lib.decoding import rgd
    from lib.evaluation import metrics

    with pytest.raises(ValueError, match=r"bootstrap_ci: n_boot=0 is out of range; allowed: a whole number >= 1"):
        bootstrap_ci([1.0, 2.0], n_boot=0)
    with pytest.raises(ValueError, match=r"kendall_tau_ci: alpha=1.5 is out of range"):
        metrics.kendall_tau_ci([1, 2, 3], [1, 3, 2], alpha=1.5)
    assert bootstrap_ci([1.0, 2.0], n_boot=10, seed=np.int64(3)) == bootstrap_ci([1.0, 2.0], n_boot=10, seed=3)
    with pytest.raises(ValueError, match=r"w must be finite, got \[nan\]"):
        rgd._row_settings(None, float("nan"), 2)
    with pytest.raises(ValueError, match="generate: no prompts"):
        rgd._row_settings(None, 0.0, 0)


def test_settings_the_notebooks_share_must_agree_before_the_first_runs(tmp_path):
    """A profile whose 01 and 02 listed only LaMP-4 ran 38 minutes and then failed in 05 ("task 'LaMP-5' was
    not built"): the disagreement is now an error when any notebook of the profile starts, 01 included."""
    cfg = {"notebooks": {"01_build_pref_lamp": {"tasks": ["LaMP-4"]}, "02_train_reward_models": {"tasks": ["LaMP-4"]},
                         "03_reward_guided_decoding": {"task": "LaMP-4"},
                         "04_policy_accuracy": {"rm_backbones": ["qwen2.5-0.5b"]}}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError) as e:
        parameters_for("01_build_pref_lamp", "bad", configs_dir=tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'bad.yaml'}: the notebooks disagree: ")
    assert "notebooks.05_generation.tasks names ['LaMP-5', 'LaMP-7'], which is not both built by 01 and given " \
           "reward models by 02 (['LaMP-4'])" in msg
    assert "notebooks.04_policy_accuracy.rm_backbones names ['qwen2.5-0.5b'], which notebook 02 trains no" in msg
    cfg["notebooks"]["05_generation"] = {"tasks": ["LaMP-4"]}
    cfg["notebooks"]["04_policy_accuracy"] = {}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    assert parameters_for("01_build_pref_lamp", "bad", configs_dir=tmp_path)["tasks"] == ["LaMP-4"]
