"""The pieces of ``make test-paper-dry``: configs/paper-dry.yaml is configs/paper.yaml with only its declared cuts
(``extends``), the fixtures carry the hub releases' quirks through the real loaders, the tiny checkpoints are the
paper's model families, caches follow what a mapped name runs, the size plots read mapped models' sizes, and the
route checker fails when a route is missing."""
from __future__ import annotations

import json
import math
import warnings

import check_paper_dry  # tests/ is on sys.path under pytest (as for real_lamp_fixture)
import pandas as pd
import paper_dry_fixture
import pytest
import tiny_checkpoints

from lib import REPO_ROOT
from lib.core import config, models, pipeline
from lib.core.config import STAGES, load_profile

# What paper-dry changes, per notebook: everything else is paper.yaml's own (or the notebook's default where
# paper.yaml sets nothing). A new difference fails here until it is declared (and explained in the profile).
CUTS = {
    "01_build_pref_lamp": {"max_source_chars", "max_query_chars"},
    "02_train_reward_models": {"pref_datasets", "seeds", "hparams", "adapt", "n_resamples"},
    "04_policy_accuracy": {"datasets", "max_pairs_per_group", "rgd_k", "n_boot", "deploy_definition", "threads"},
    "05_generation": {"max_new_tokens", "icl_max_tokens", "rgd_k", "rgd_rms", "rm_prefix_train", "threads"},
    "06_figures_tables": {"n_boot"},
}
# changed, not cut (the profile says why): so that notebook 05 decodes on every path, the threads of tiny models,
# and prefix-trained reward models left out of notebook 05
COVERAGE = {"rgd_rms", "deploy_definition", "threads", "rm_prefix_train"}
MISSING = object()


def _effective(nb: str, profile: str) -> dict:
    """What notebook ``nb`` runs with under ``profile``: its declared defaults under the profile's parameters."""
    return pipeline._defaults(pipeline.declared_parameters(pipeline.notebook_path(nb))) | \
        pipeline.parameters_for(nb, profile)


def _no_larger(dry, paper, where: str) -> None:
    """A cut only makes things smaller: numbers not above, lists a subset, mappings key by key."""
    if paper is None and where.endswith(".datasets"):  # None: every dataset of the index
        assert isinstance(dry, list) and dry, where
    elif isinstance(paper, dict):
        assert set(dry) <= set(paper) | {"path"}, where
        for k in dry:
            if k != "path":
                _no_larger(dry[k], paper[k], f"{where}.{k}")
    elif isinstance(paper, list):
        assert set(dry) <= set(paper), where
    elif isinstance(paper, (int, float)) and not isinstance(paper, bool):
        assert dry <= paper, where
    else:
        assert dry == paper, where


def _with_loader_defaults(sets: dict) -> dict:
    """Each preference set's loader arguments with the loader's defaults filled in (lib.data.prefdata.LOADERS)."""
    import inspect

    from lib.data import prefdata

    return {name: {k: v.default for k, v in inspect.signature(prefdata.LOADERS[name]).parameters.items()
                   if v.default is not inspect.Parameter.empty and isinstance(v.default, (int, float))} | kw
            for name, kw in sets.items()}


def test_paper_dry_is_the_paper_profile_with_only_its_declared_cuts():
    for nb in STAGES:
        dry, paper = _effective(nb, "paper-dry"), _effective(nb, "paper")
        diff = {k for k in set(dry) | set(paper) if k != "profile" and dry.get(k, MISSING) != paper.get(k, MISSING)}
        assert diff == CUTS.get(nb, set()), f"{nb}: paper-dry differs from paper in {sorted(diff)}"
        for k in diff - COVERAGE:
            _no_larger(dry[k], _with_loader_defaults(paper[k]) if k == "pref_datasets" else paper[k], f"{nb}.{k}")
    assert _effective("05_generation", "paper-dry")["rgd_rms"] == "all"
    assert _effective("04_policy_accuracy", "paper-dry")["deploy_definition"] == "cumulative"
    assert _effective("05_generation", "paper-dry")["rm_prefix_train"] is False
    assert {_effective(nb, "paper-dry")["threads"] for nb in ("04_policy_accuracy", "05_generation")} == {1}
    # the preference sets: local files instead of the hub, every other loader argument the paper's (or fewer users)
    sets = _effective("02_train_reward_models", "paper-dry")["pref_datasets"]
    assert all(kw["path"] == f"data/raw/prefsets/{name}" for name, kw in sets.items())


def test_paper_dry_maps_every_model_the_paper_profile_names():
    raw = load_profile("paper-dry")["common"]["models"]
    named = set()
    for nb in STAGES:
        p = _effective(nb, "paper")
        for key in ("policy", "policies", "backbones", "lora_backbones", "backbone"):
            v = p.get(key)
            named |= set(v if isinstance(v, list) else [v] if isinstance(v, str) and v != "policy" else [])
    assert named == set(raw) == {*tiny_checkpoints.QWEN, "minilm-l6"}
    assert all(t == str(tiny_checkpoints.DEFAULT_OUT / n) for n, t in raw.items())  # ../.cache read against configs/


def _write(d, name, text):
    (d / f"{name}.yaml").write_text(text)


def test_extends_merges_parameter_by_parameter_and_reads_relative_folders_against_the_file(tmp_path):
    _write(tmp_path, "base", "common: {profile: base, seed: 3}\nnotebooks:\n  01_build_pref_lamp: {tasks: [LaMP-4], "
                             "min_profile: 5}\n  02_train_reward_models: {hparams: {epochs: 7, lr: 0.1}}\n")
    _write(tmp_path, "kid", "extends: base\ncommon: {profile: kid, models: {m: ./mine, h: org/name}}\n"
                            "notebooks:\n  01_build_pref_lamp: {min_profile: 2}\n"
                            "  02_train_reward_models: {hparams: {epochs: 1}}\n")
    cfg = load_profile("kid", tmp_path)
    assert cfg["common"] == {"profile": "kid", "seed": 3, "models": {"m": str(tmp_path / "mine"), "h": "org/name"}}
    assert cfg["notebooks"]["01_build_pref_lamp"] == {"tasks": ["LaMP-4"], "min_profile": 2}
    assert cfg["notebooks"]["02_train_reward_models"]["hparams"] == {"epochs": 1}  # a parameter replaces, whole
    assert "extends" not in cfg


@pytest.mark.parametrize("files, match", [
    ({"kid": "extends: nope\ncommon: {profile: kid}\n"}, "extends 'nope', which names no other profile"),
    ({"kid": "extends: kid\ncommon: {profile: kid}\n"}, "extends 'kid', which names no other profile"),
    ({"kid": "extends: mid\ncommon: {profile: kid}\n", "mid": "extends: base\ncommon: {profile: mid}\n",
      "base": "common: {profile: base}\n"}, "one level only"),
    ({"kid": "extends: base\ncommon: {profile: kid}\n",
      "base": "stages: [02_train_reward_models, 04_policy_accuracy, 06_figures_tables]\ncommon: {profile: base}\n"},
     "restate it here"),
    ({"kid": "extends: base\n", "base": "common: {profile: base}\n"}, "common.profile is 'base' but the file is"),
    ({"kid": "extends: base\nnotebooks: {01_build_pref_lamp: 3}\n", "base": "common: {profile: base}\n"},
     "notebooks.01_build_pref_lamp must be a mapping"),
])
def test_extends_errors_name_the_file(tmp_path, files, match):
    for name, text in files.items():
        _write(tmp_path, name, text)
    with pytest.raises(ValueError, match=match) as e:
        load_profile("kid", tmp_path)
    assert "kid.yaml" in str(e.value)


def test_the_makefile_tracks_the_parent_profile():
    import subprocess

    r = subprocess.run(["make", "--no-print-directory", "-C", str(REPO_ROOT), "-n", "-W", "configs/paper.yaml",
                        "PROFILE=paper-dry", "DATA_ROOT=/nonexistent-paper-dry", "PY=true",
                        "/nonexistent-paper-dry/build/paper-dry/params/04_policy_accuracy.json"],
                       capture_output=True, text=True, timeout=60)
    assert "--write-params" in r.stdout, r.stdout + r.stderr


# --------------------------------------------------------------------------------- fixtures
def test_the_fixture_carries_the_hub_quirks_through_the_real_loaders(tmp_path):
    from lib.data import prefdata

    out = paper_dry_fixture.write_prefsets(tmp_path)
    drops = {}
    tldr = prefdata.load("tldr", path=out["tldr"], drops=drops)
    rows = [json.loads(x) for x in (out["tldr"] / "comparisons" / "validation.jsonl").read_text().splitlines()]
    cnn = [r for r in rows if r["info"]["article"]]
    assert cnn and all(r["info"]["post"] is None and r["split"] == "valid2" for r in cnn)
    assert drops == {"empty_summary": 1} and sum(r["prompt"].startswith("ARTICLE:") for r in tldr) == len(cnn) - 1
    drops = {}
    assert prefdata.load("prism", path=out["prism"], drops=drops) and drops["single_response_turn"] == 4
    cols = pd.read_parquet(next(out["personalllm"].rglob("*.parquet"))).columns
    assert {f"response_{j}_model" for j in range(1, 9)} <= set(cols)
    assert prefdata.load("personalllm", path=out["personalllm"], n_users=8, prompts_per_user=6)


# --------------------------------------------------------------------------------- tiny checkpoints
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tiny_checkpoints.write_all(out)


@pytest.fixture
def mapped(tiny, monkeypatch):
    monkeypatch.setenv(models.ENV_VAR, ",".join(f"{n}={f}" for n, f in tiny.items()))
    return tiny


def test_tiny_checkpoints_are_the_paper_families_at_four_sizes_with_one_tokenizer(mapped):
    specs = {n: models.spec(n) for n in mapped}
    sizes = [specs[n].params_m for n in tiny_checkpoints.QWEN]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4 and all(s < 1 for s in sizes)
    assert specs["minilm-l6"].kind == "encoder" and all(specs[n].kind == "causal_lm" for n in tiny_checkpoints.QWEN)
    cfgs = {n: json.loads((mapped[n] / "config.json").read_text()) for n in mapped}
    assert {cfgs[n]["model_type"] for n in tiny_checkpoints.QWEN} == {"qwen2"} and cfgs["minilm-l6"]["model_type"] == "bert"
    assert [cfgs[n]["tie_word_embeddings"] for n in tiny_checkpoints.QWEN] == [True, True, True, False]  # as Qwen2.5
    toks = {n: models.load_tokenizer(n) for n in tiny_checkpoints.QWEN}
    assert all(models.same_tokenizer(toks["qwen2.5-0.5b"], t) for t in toks.values())  # RGD path b, not c
    tok = toks["qwen2.5-7b"]
    text = models.prompt_text(tok, "Summarise: café 🚀")
    assert text.startswith("<|im_start|>system\nYou are Qwen") and text.endswith("<|im_start|>assistant\n")
    assert tok.eos_token == "<|im_end|>" and tok.decode(tok("café 🚀")["input_ids"]) == "café 🚀"  # byte-level
    model, _ = models.load_causal_lm("qwen2.5-7b")
    assert set(models.eos_ids(model, tok)) == {tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
    assert not models.same_tokenizer(tok, models.load_tokenizer("minilm-l6"))  # RGD path c


def test_tiny_checkpoints_are_written_once(tiny):
    before = {n: (f / "model.safetensors").stat().st_mtime_ns for n, f in tiny.items()}
    tiny_checkpoints.write_all(next(iter(tiny.values())).parent)
    assert {n: (f / "model.safetensors").stat().st_mtime_ns for n, f in tiny.items()} == before


# --------------------------------------------------------------------------------- caches and sizes of mapped models
def test_cache_ids_follow_the_weights_a_name_runs(mapped, tmp_path, monkeypatch):
    monkeypatch.delenv(models.ENV_VAR)
    assert models.cache_id("smollm2-135m") == "smollm2-135m"  # registry names keep their caches
    assert models.cache_id("qwen2.5-7b") == "qwen2.5-7b"
    monkeypatch.setenv(models.ENV_VAR, f"qwen2.5-7b={mapped['qwen2.5-7b']}")
    tiny_id = models.cache_id("qwen2.5-7b")
    assert tiny_id.startswith("qwen2.5-7b@")
    other = tmp_path / "other"  # the same name mapped to other weights
    import shutil

    shutil.copytree(mapped["qwen2.5-3b"], other)
    monkeypatch.setenv(models.ENV_VAR, f"qwen2.5-7b={other}")
    assert models.cache_id("qwen2.5-7b") not in (tiny_id, "qwen2.5-7b")


def test_caches_of_a_mapped_name_are_not_served_for_other_weights(mapped, tmp_path, monkeypatch):
    """Rejected responses (notebook 01), features (02) and generations (05) cached for the tiny stand-in are
    recomputed once the name runs other weights."""
    from lib.decoding import greedy
    from lib.rewards.features import LMFeaturizer, cached_features

    def outputs(target):
        monkeypatch.setenv(models.ENV_VAR, f"qwen2.5-7b={target}")
        gen = greedy.policy_generator("qwen2.5-7b", max_new_tokens=4, cache_path=tmp_path / "gen.jsonl")
        model, tok = models.load_causal_lm("qwen2.5-7b")
        feats = cached_features(LMFeaturizer(model, tok, name="qwen2.5-7b"), ["p"], ["r"], tmp_path / "f", False)
        return gen(["Write a title."]), feats

    g7, f7 = outputs(mapped["qwen2.5-7b"])
    g3, f3 = outputs(mapped["qwen2.5-3b"])  # the same name, now the 3b weights
    assert f7.shape != f3.shape  # 96 vs 64 features: recomputed, not read from the 7b's cache file
    assert g7 != g3  # the 7b's cached response was not served
    model, tok = models.load_causal_lm("qwen2.5-7b")
    assert g3 == [g.strip() for g in greedy.greedy_generate(model, tok, ["Write a title."], 4)]
    assert len(list((tmp_path / "f").glob("*.pt"))) == 2


def test_notebook_05s_generation_cache_is_keyed_by_the_weights(tmp_path):
    """generate_policy_rows passes the loaded policy's models.cache_id: another cache_id under the same name misses."""
    from test_evaluate import Boom

    from lib.evaluation import generation

    from _tiny import query, tiny_lm, tiny_tokenizer

    tok = tiny_tokenizer()
    qs = [query(f"q{i}", user=f"u{i}", n_profile=2) for i in range(2)]
    run = lambda model, cid: generation.evaluate(qs, model, tok, "qwen2.5-7b", icl_ks=(1,), max_new_tokens=3,  # noqa: E731
                                                 cache_dir=tmp_path, progress=False, cache_id=cid)
    first = run(tiny_lm(tok), "qwen2.5-7b@aaaa")
    assert run(Boom(), "qwen2.5-7b@aaaa").generation.tolist() == first.generation.tolist()  # served from the cache
    with pytest.raises(AssertionError, match="the model was called"):
        run(Boom(), "qwen2.5-7b@bbbb")  # other weights under the same name: generated, not served


def test_size_plots_read_the_sizes_of_mapped_models(mapped):
    from lib.report import results

    s = pd.DataFrame([{"task": "LaMP-4", "model": m, "system": "base", "param": None, "rm": None, "rouge1": 0.3,
                       "rouge1_lo": 0.2, "rouge1_hi": 0.4, "rougeL": 0.3, "follows_rule": None, "n": 4}
                      for m in tiny_checkpoints.QWEN])
    best = results.best_systems(s)
    got = best.set_index("model").params_m.to_dict()
    assert got == {m: pytest.approx(models.spec(m).params_m) for m in tiny_checkpoints.QWEN}
    assert got["qwen2.5-7b"] < 1 != models.REGISTRY["qwen2.5-7b"].params_m  # the mapped folder's, not the registry's
    with pytest.warns(UserWarning, match="no parameter count for policy 'nobody'"):
        assert math.isnan(results.params_m("nobody"))


# --------------------------------------------------------------------------------- the route checker
def _decodes(paths: dict) -> pd.DataFrame:
    return pd.DataFrame([{"policy": p, "w": w, "rgd_path": path if w else "plain"} for p, path in paths.items()
                         for w in (0.0, 1.0)])


def test_the_checker_asserts_the_decoding_paths_of_notebook_03(tmp_path):
    P = config.paths("paper-dry", tmp_path)
    P.rgd.mkdir(parents=True)
    _decodes({"qwen2.5-0.5b": "shared", "qwen2.5-7b": "separate"}).to_csv(P.rgd / "decodes.csv", index=False)
    assert "path b (separate) for qwen2.5-7b" in check_paper_dry.check_decodes(P)[0]
    _decodes({"qwen2.5-0.5b": "shared", "qwen2.5-7b": "text"}).to_csv(P.rgd / "decodes.csv", index=False)
    with pytest.raises(check_paper_dry.RouteMissing, match="path b"):
        check_paper_dry.check_decodes(P)


def _paths_table(drop=None) -> pd.DataFrame:
    rows = [{"task": t, "policy": p, "rm": f"{bb}-{t}", "backbone": bb, "rgd_path": check_paper_dry.expected_path(p, bb)}
            for t in check_paper_dry.LAMP_TASKS + check_paper_dry.PREF_SETS for p in check_paper_dry.POLICIES
            for bb in (check_paper_dry.BACKBONE, check_paper_dry.LORA, check_paper_dry.ENCODER)]
    return pd.DataFrame([r for r in rows if (r["policy"], r["backbone"]) != drop])


def _notebook_05(P, paths: pd.DataFrame, keep=lambda r: True) -> None:
    """deployed_settings.csv (w = 1 for the reward models ``keep`` keeps, 0 for the others) and generations.csv
    with those decodes, ICL k 1-8 for every policy."""
    lamp = paths[paths.task.isin(check_paper_dry.LAMP_TASKS)]
    dep = lamp.assign(w=[1.0 if keep(r) else 0.0 for r in lamp.itertuples()])
    dep.to_csv(P.eval / "deployed_settings.csv", index=False)
    row = dict(user="u", user_group="seen", query_id="q", generation="x", reference="x", rouge1=0.5, rougeL=0.5,
               follows_rule=None, n_examples=0)
    rows = [dict(row, task=r.task, system="rgd", param=r.w, rm=r.rm, model=r.policy) for r in dep.itertuples()]
    rows += [dict(row, task="LaMP-4", system="icl", param=float(k), rm=None, model=m) for k in (1, 2, 4, 8)
             for m in check_paper_dry.POLICIES]
    pd.DataFrame(rows).to_csv(P.eval / "generations.csv", index=False)


def test_the_checker_wants_every_path_for_every_policy_in_notebook_05(tmp_path):
    P = config.paths("paper-dry", tmp_path)
    P.eval.mkdir(parents=True)
    paths = _paths_table()
    _notebook_05(P, paths)
    assert len(check_paper_dry.check_generations(P, paths)) == 5
    _notebook_05(P, paths, keep=lambda r: not (r.policy == "qwen2.5-3b" and r.backbone == "minilm-l6"))
    with pytest.raises(check_paper_dry.RouteMissing, match="qwen2.5-3b decodes .* on paths \\['separate', 'text'\\]"):
        check_paper_dry.check_generations(P, paths)
    _notebook_05(P, paths, keep=lambda r: r.backbone != check_paper_dry.LORA)
    with pytest.raises(check_paper_dry.RouteMissing, match="a LoRA reward model guides decoding"):
        check_paper_dry.check_generations(P, paths)
    _notebook_05(P, paths)  # a deployed reward model that 05 did not decode
    gen = pd.read_csv(P.eval / "generations.csv")
    gen.drop(index=0).to_csv(P.eval / "generations.csv", index=False)
    with pytest.raises(check_paper_dry.RouteMissing, match="deployed at w != 0 by notebook 04 decoded at that w"):
        check_paper_dry.check_generations(P, paths)


def test_expected_paths():
    assert [check_paper_dry.expected_path("qwen2.5-0.5b", b) for b in ("qwen2.5-0.5b", "qwen2.5-0.5b+lora",
                                                                       "minilm-l6")] == ["shared", "separate", "text"]
    assert check_paper_dry.expected_path("qwen2.5-3b", "qwen2.5-0.5b") == "separate"


# --------------------------------------------------------------------------------- bugs the dry run found
@pytest.mark.parametrize("rm_backbones", [None, "policy", ["qwen2.5-0.5b", "minilm-l6"]])
def test_notebook_05_reads_the_deployed_settings_of_every_backbone_setting(tmp_path, rm_backbones):
    """The paper profile's rm_backbones: null (every backbone) was written by notebook 04 as "None", which pandas reads
    as a missing value: notebook 05 then refused the file, so the paper route ended at 05."""
    from lib.core import schema
    from lib.evaluation import deployment

    P = config.paths("paper-dry", tmp_path)
    dep = pd.DataFrame({"task": ["LaMP-4"], "policy": ["p"], "rm": ["r"], "method": ["bt"], "method_pick": [True],
                        "w": [1.0], "w_decode": [0.5]})
    schema.write_results(dep.assign(calibrated=True, rgd_k=4, rm_backbones=str(rm_backbones)),  # as notebook 04 does
                         P.eval / "deployed_settings.csv")
    params = {"calibrated": True, "rgd_k": 4, "rm_backbones": rm_backbones}
    assert deployment.read_deployed(P, params).w_decode.tolist() == [0.5]
    with pytest.raises(ValueError, match="notebook 04 chose the deployed settings with rm_backbones"):
        deployment.read_deployed(P, params | {"rm_backbones": "policy" if rm_backbones != "policy" else None})


def test_notebook_06_rebuilds_the_tables_under_notebook_04s_criterion(tmp_path):
    """Notebook 06 rebuilt notebook 04's tables with the default deployment criterion: under a profile whose 04 chose
    the deployed w with another one (paper-dry: cumulative), 06's deployed settings were not the ones 05 decoded."""
    from lib.core import schema
    from lib.evaluation import selection

    P = config.paths("paper-dry", tmp_path)
    with pytest.raises(FileNotFoundError, match="run notebook 04 first"):
        selection.deployed_definition(P)
    dep = pd.DataFrame({"task": ["t", "t"], "rm": ["a", "b"], "definition": "cumulative", "normalise": False})
    schema.write_results(dep, P.eval / "deployed_settings.csv")
    assert selection.deployed_definition(P) == "cumulative"
    schema.write_results(dep.assign(definition=["cumulative", "rgd_likelihood"]), P.eval / "deployed_settings.csv")
    with pytest.raises(ValueError, match="one deployment criterion expected"):
        selection.deployed_definition(P)
    nb = json.loads((REPO_ROOT / "notebooks" / "06_figures_tables.ipynb").read_text())
    assert any("deploy_definition=selection.deployed_definition(P)" in "".join(c["source"]) for c in nb["cells"])
