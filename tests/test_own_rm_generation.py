"""Your own reward model on your own data (lib/evaluation/own_rm.py, own_data.py): reward-guided generations and
ROUGE on Pref-LaMP queries for (a) a sequence-classification checkpoint and (b) a RewardModel object, the
readers of pairs and queries (JSONL, a Pref-LaMP build, an export) and their errors, the CLI's CSVs, and the
README's example run as written.

Two reward models whose preference is known by construction: a tiny Llama sequence classifier whose logit is
sqrt(hidden) when the last token of the text is "stock" and 0 otherwise (attention and MLP outputs zeroed, so
the last position holds its own token's embedding), and a BT head of this project on a one-hot feature of the
response's last word that rewards "rises". Every candidate token is considered (k = vocabulary size)."""
from __future__ import annotations

import json
import re
import shutil
import warnings

import pandas as pd
import pytest
import torch

from lib.core import models
from lib.evaluation import own_rm
from tests._tiny import query, tiny_lm, tiny_tokenizer

PROMPTS = ["generate a headline for this article : stock market rises today", "tweet about music film game",
           "abstract : we propose a deep neural network", "title for this paper : new study shows results"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared 2-core machine: threads only contend
    yield
    torch.set_num_threads(n)


def favour_stock_checkpoint(out, tok):
    """A sequence-classification checkpoint whose reward is high exactly when the text ends with 'stock'."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, num_labels=1, pad_token_id=tok.pad_token_id)
    m = LlamaForSequenceClassification(cfg).eval()
    with torch.no_grad():
        for layer in m.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = m.model.embed_tokens.weight
        emb[:, 0] = 0.0
        emb[tok.convert_tokens_to_ids("stock")] = torch.eye(32)[0]
        m.score.weight.zero_()
        m.score.weight[0, 0] = 1.0
    m.save_pretrained(out)
    tok.save_pretrained(out)
    return out


class LastWord:
    """A text featurizer: the one-hot vector of the response's last token."""

    kind, name = "encoder_mean", "lastword"

    def __init__(self, tok):
        self.tok, self.dim = tok, len(tok)

    def features(self, prompts, responses, progress=False):
        out = torch.zeros(len(list(responses)), self.dim)
        for i, r in enumerate(responses):
            ids = self.tok(r, add_special_tokens=False)["input_ids"]
            if ids:
                out[i, ids[-1]] = 1.0
        return out


def rises_bt(tok):
    from lib.rewards import BT

    rm = BT("lastword", "encoder_mean", len(tok), users=[])
    with torch.no_grad():
        rm.w[tok.convert_tokens_to_ids("rises")] = 10.0
    rm.featurizer = LastWord(tok)
    return rm


def _queries():
    qs = [query(f"q{i}", user=f"u{i % 2}") for i in range(len(PROMPTS))]
    for q, p, ref in zip(qs, PROMPTS, ["stock market", "music film", "deep neural network", "new study"]):
        q["prompt"], q["reference"] = p, ref
    return qs


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("own_gen")
    tok = tiny_tokenizer()
    tiny_lm(tok).save_pretrained(root / "policy")
    tok.save_pretrained(root / "policy")
    return root, tok, favour_stock_checkpoint(root / "fav", tok), _queries()


def _words(text):
    return text.split()


def test_checkpoint_steers_generation_and_rouge_is_against_the_gold(setup):
    """(a) A sequence-classification checkpoint: w = 0 is the base policy's greedy output (model.generate),
    w = 10 writes the favoured word, ROUGE is scored against each query's reference, base beside each w."""
    from rouge_score import rouge_scorer

    from lib.data.preflamp import clean_generation

    root, tok, fav, qs = setup
    rows = own_rm.generate_and_score(str(fav), qs, policy=str(root / "policy"), ws=(0, 10), k=len(tok),
                                     max_new_tokens=5, device="cpu")
    assert set(rows.system) == {"base", "rgd"} and len(rows) == 3 * len(qs)
    assert set(rows[rows.system == "rgd"].rm) == {str(fav)} and rows[rows.system == "base"].rm.isna().all()
    model, _ = models.load_causal_lm(str(root / "policy"), device="cpu")
    base = rows[rows.system == "base"].set_index("query_id")
    for q in qs:  # the base rows are the policy's own greedy output, token for token
        ids = tok(models.prompt_text(tok, q["prompt"]), add_special_tokens=False, return_tensors="pt")["input_ids"]
        out = model.generate(ids, max_new_tokens=5, do_sample=False)[0, ids.shape[1]:]
        assert base.loc[q["query_id"], "generation"] == clean_generation(tok.decode(out, skip_special_tokens=True))
    at = {w: rows[(rows.system == "rgd") & (rows.w == w)].set_index("query_id") for w in (0, 10)}
    assert (at[0].generation == base.generation.loc[at[0].index]).all()
    assert all(_words(g) and set(_words(g)) == {"stock"} for g in at[10].generation)  # steered to the favoured word
    assert "stock" not in " ".join(base.generation)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"])
    for qid, r in pd.concat([base, at[10]]).iterrows():
        gold = next(q["reference"] for q in qs if q["query_id"] == qid)
        assert r.reference == gold and r.rouge1 == pytest.approx(scorer.score(gold, r.generation)["rouge1"].fmeasure)
    n = len(_words(at[10].loc["q0", "generation"]))  # 'stock' x n against 'stock market': P = 1/n, R = 1/2
    assert at[10].loc["q0", "rouge1"] == pytest.approx(2 * (1 / n) * 0.5 / (1 / n + 0.5))
    tab = own_rm.rouge_table(rows).set_index("w")
    assert tab.loc[10, "changed"] == 1.0 and tab.loc[0, "changed"] == 0.0 and (tab.n == len(qs)).all()
    assert tab.loc[10, "rouge1"] == pytest.approx(at[10].rouge1.mean())
    assert tab.loc[10, "base_rouge1"] == pytest.approx(base.rouge1.mean()) == tab.loc[0, "rouge1"]
    assert tab.loc[10, "d_rouge1"] == pytest.approx(at[10].rouge1.mean() - base.rouge1.mean()) and tab.loc[10, "d_rouge1"] > 0
    # step_scale: w is nominal, decoding uses w / step_scale
    half = own_rm.generate_and_score(str(fav), qs[:2], policy=str(root / "policy"), ws=(20,), k=len(tok),
                                     max_new_tokens=5, step_scale=2.0, device="cpu")
    r = half[half.system == "rgd"].set_index("query_id")
    assert (r.w == 20).all() and (r.w_decode == 10).all()
    assert r.generation.to_dict() == at[10].generation.loc[r.index].to_dict()


def test_a_reward_model_object_of_this_project(setup, tmp_path):
    """(b) A RewardModel object (a BT head on a text featurizer) passed in Python: pairs and generations; a
    folder it saved (model.safetensors, or an older release's model.pt) loads as that model, not as a checkpoint."""
    from lib.rewards import BT

    root, tok, _, qs = setup
    rm = rises_bt(tok)
    rm.save(tmp_path / "bt")
    (tmp_path / "old").mkdir()
    shutil.copy(tmp_path / "bt" / "config.json", tmp_path / "old")
    torch.save(rm.state_dict(), tmp_path / "old" / "model.pt")
    for d in ("bt", "old"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # model.pt: tested in test_rewards_learning.py
            back = own_rm.load_own_rm(str(tmp_path / d))
        assert type(back) is BT and torch.equal(back.w, rm.w)
    model, _ = models.load_causal_lm(str(root / "policy"), device="cpu")
    rows = own_rm.generate_and_score(rm, qs, policy=(model, tok), policy_name="tiny", ws=(5,), k=len(tok),
                                     max_new_tokens=4)
    rgd = rows[rows.system == "rgd"]
    assert set(rgd.rm) == {"bt/lastword"} and all(set(_words(g)) == {"rises"} for g in rgd.generation)
    pairs = [{"pair_id": f"p{i}", "user": "u", "prompt": p, "chosen": f"{w} rises", "rejected": f"{w} falls"}
             for i, (p, w) in enumerate(zip(PROMPTS, ["stock", "film", "model", "data"]))]
    res = own_rm.evaluate_reward_model(rm, pairs, policy=(model, tok), policy_name="tiny", ws=(0, 10), k=len(tok),
                                       step_calibration=False)
    assert res["rm_acc"] == 1.0 and res["step_scale"] == 1.0
    acc = res["policy_acc"].set_index(["definition", "normalise", "w"]).policy_acc
    assert acc[("cumulative", False, 10.0)] == 1.0  # the reward of the last token decides every pair


def test_reads_a_build_an_export_and_filters_splits(tmp_path):
    from lib.data import export, preflamp, synthetic

    synthetic.write_synthetic_lamp(tmp_path / "raw", tasks=("LaMP-4", "LaMP-5"), n_users=4, profile_size=4,
                                   queries_per_user=2, seed=3)
    build = tmp_path / "preflamp"
    preflamp.build(tmp_path / "raw", build, corpus="synthetic", tasks=("LaMP-4", "LaMP-5"), rejected="other_rule", seed=0)
    export.export_preflamp(build, tmp_path / "ds")
    all_pairs, all_q = preflamp.load_pairs(build), preflamp.load_queries(build)
    test_ids = sorted(p["pair_id"] for p in all_pairs if p["split"] == "test")
    assert 0 < len(test_ids) < len(all_pairs)
    for src in (build, tmp_path / "ds", tmp_path / "ds" / "pairs"):
        assert sorted(p["pair_id"] for p in own_rm.read_pairs(src)) == test_ids, src
    assert len(own_rm.read_pairs(build, split=None)) == len(all_pairs)
    assert sorted(p["pair_id"] for p in own_rm.read_pairs(build, split="train")) == \
        sorted(p["pair_id"] for p in all_pairs if p["split"] == "train")
    want = sorted(q["query_id"] for q in all_q)
    for src in (build, build / "LaMP-4" / "queries.jsonl", tmp_path / "ds", tmp_path / "ds" / "queries"):
        got = own_rm.read_queries(src)
        assert sorted(q["query_id"] for q in got) == (want if "LaMP-4" not in str(src) else
                                                      sorted(q["query_id"] for q in all_q if q["task"] == "LaMP-4"))
    with pytest.raises(KeyError, match=r"ds/pairs: a DatasetDict without the split 'validation' \(splits: \['test', 'train'\]\)"):
        own_rm.read_pairs(tmp_path / "ds" / "pairs", split="validation")
    f = build / "LaMP-5" / "queries.jsonl"
    recs = [json.loads(x) for x in f.read_text().splitlines()]
    del recs[1]["reference"]
    f.write_text("".join(json.dumps(r) + "\n" for r in recs))
    with pytest.raises(KeyError, match=rf"LaMP-5/queries.jsonl: record 2 \({recs[1]['query_id']!r}\) has no field\(s\) \['reference'\]"):
        own_rm.read_queries(build)


def _jsonl(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def test_bad_pairs_and_queries_files_name_file_record_and_field(tmp_path):
    qs = _queries()
    cases = [
        ([qs[0], {k: v for k, v in qs[1].items() if k != "reference"}], KeyError,
         r"q.jsonl: record 2 \('q1'\) has no field\(s\) \['reference'\]"),
        ([{**qs[0], "reference": " "}], ValueError, r"q.jsonl: record 1 \('q0'\): field\(s\) \['reference'\] must be non-empty"),
        ([qs[0], {**qs[1], "user": 7}], ValueError, r"record 2 \('q1'\): field\(s\) \['user'\] must be strings"),
        ([qs[0], qs[1], {**qs[2], "query_id": "q0"}], ValueError,
         r"q.jsonl: record 3: field 'query_id' 'q0' repeats .*q.jsonl record 1"),
        (["not an object"], ValueError, r"q.jsonl: line 1: expected a JSON object"),
    ]
    for recs, err, msg in cases:
        f = tmp_path / "q.jsonl"
        f.write_text("".join(json.dumps(r) + "\n" for r in recs))
        with pytest.raises(err, match=msg):
            own_rm.read_queries(f)
    (tmp_path / "q.jsonl").write_text(json.dumps(qs[0]) + "\n{\"query_id\": \"q1\", \n")
    with pytest.raises(ValueError, match=r"q.jsonl.*line 2"):
        own_rm.read_queries(tmp_path / "q.jsonl")
    with pytest.raises(FileNotFoundError, match=r"nowhere.jsonl: no such file or folder"):
        own_rm.read_queries(tmp_path / "nowhere.jsonl")
    pair = {"pair_id": "p0", "user": "u", "prompt": "x", "chosen": "a", "rejected": "b", "split": "train"}
    with pytest.raises(ValueError, match=r"p.jsonl: no pairs with split 'test' \(splits there: \['train'\]\)"):
        own_rm.read_pairs(_jsonl(tmp_path / "p.jsonl", [pair]))
    assert own_rm.read_pairs(tmp_path / "p.jsonl", split=None) == [pair]
    no_split = {k: v for k, v in pair.items() if k != "split"}
    assert own_rm.read_pairs(_jsonl(tmp_path / "p.jsonl", [no_split])) == [no_split]  # your own file: all kept
    with pytest.raises(ValueError, match=r"p.jsonl: record 2 \('p1'\): field\(s\) \['rejected'\] must be non-empty"):
        own_rm.read_pairs(_jsonl(tmp_path / "p.jsonl", [no_split, {**no_split, "pair_id": "p1", "rejected": ""}]))
    with pytest.raises(FileNotFoundError, match=r"neither a JSONL file, a Pref-LaMP build .* nor a datasets"):
        own_rm.read_pairs(tmp_path)


def test_cli_writes_three_csvs_and_nothing_on_bad_input(setup, tmp_path, capsys):
    root, tok, fav, qs = setup
    pairs = [{"pair_id": f"p{i}", "user": "u", "prompt": p, "chosen": "market stock", "rejected": "stock market"}
             for i, p in enumerate(PROMPTS[:3])]
    args = ["--rm", str(fav), "--pairs", str(_jsonl(tmp_path / "p.jsonl", pairs)), "--policy", str(root / "policy"),
            "--ws", "0", "10", "--k", str(len(tok)), "--max-new-tokens", "3", "--device", "cpu", "--out"]
    bad = _jsonl(tmp_path / "q.jsonl", [qs[0], {k: v for k, v in qs[1].items() if k != "task"}])
    with pytest.raises(KeyError, match=r"q.jsonl: record 2 \('q1'\) has no field\(s\) \['task'\]"):
        own_rm.main(args + [str(tmp_path / "out"), "--queries", str(bad)])
    assert not (tmp_path / "out").exists()
    _jsonl(tmp_path / "q.jsonl", qs[:2])
    assert own_rm.main(args + [str(tmp_path / "out"), "--queries", str(tmp_path / "q.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "policy_acc@w=10" in out and re.search(r"step_scale = [0-9.]+\n", out)
    acc = pd.read_csv(tmp_path / "out" / "policy_acc.csv")
    assert (acc.rm_acc == 1.0).all() and acc.step_scale.iloc[0] > 0  # 'stock' last wins every pair
    rouge = pd.read_csv(tmp_path / "out" / "rouge.csv").set_index("w")
    assert rouge.loc[10, "changed"] == 1.0 and rouge.loc[10, "w_decode"] == pytest.approx(10 / acc.step_scale.iloc[0])
    gens = pd.read_csv(tmp_path / "out" / "generations.csv")
    assert len(gens) == 3 * 2 and {"generation", "reference", "rouge1", "rougeL", "w", "w_decode"} <= set(gens.columns)


def test_readme_example_runs_as_written(setup, tmp_path, monkeypatch, capsys):
    """The README's own-reward-model example, executed verbatim in a folder holding the files it names (the
    policy name mapped to the tiny policy by $PRC_MODELS, the way a user maps theirs)."""
    from lib import REPO_ROOT

    root, tok, fav, qs = setup
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("\n## Evaluating your own reward model", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 10
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(models.ENV_VAR, f"smollm2-135m={root / 'policy'}")
    shutil.copytree(fav, tmp_path / "my-reward-model")
    _jsonl(tmp_path / "my_pairs.jsonl", [{"pair_id": f"p{i}", "user": "u", "prompt": p, "chosen": "new stock",
                                          "rejected": "stock new"} for i, p in enumerate(PROMPTS[:2])])
    names = re.findall(r"read_queries\(\"([^\"]+)\"\)", code)
    assert names, "the example reads queries from a file"
    (tmp_path / names[0]).parent.mkdir(parents=True, exist_ok=True)
    _jsonl(tmp_path / names[0], qs[:2])
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "policy_acc@w=1" in out and "rm_acc" in out
    written = [pd.read_csv(f) for f in sorted(tmp_path.glob("*.csv"))]
    assert len(written) == 1 and {"w", "rouge1", "base_rouge1", "d_rouge1", "changed"} <= set(written[0].columns)
    assert sorted(written[0].w) == [1.0, 2.0] and (written[0].n == 2).all()


def test_python_m_runs_the_entry_point():
    import subprocess
    import sys

    from lib import REPO_ROOT

    r = subprocess.run([sys.executable, "-m", "lib.evaluation.own_rm", "--rm", "x"], cwd=REPO_ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "give --pairs, --queries or both" in r.stderr
