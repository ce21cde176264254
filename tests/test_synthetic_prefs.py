"""Synthetic multi-user preference sets (lib/data/synthetic_prefs.py) read back by the real loaders (lib/data/prefdata.py)."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lib.data import prefdata, synthetic_scenes
from lib.data import synthetic_prefs as sp

N_USERS, PAIRS = 12, 9  # the defaults, spelled out: the smoke profile's sizes


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("prefsets")
    return root, sp.write_synthetic_prefsets(root, seed=0)


@pytest.fixture(scope="module")
def loaded(written):
    root, _ = written
    return {name: prefdata.load(name, **kw) for name, kw in sp.pref_datasets(root).items()}


def _data_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------- layout and counts
def test_layout(written):
    root, paths = written
    assert paths == {n: root / n for n in sp.NAMES}
    assert set(_data_files(root / "tldr")) == {"comparisons/train.jsonl", "comparisons/validation.jsonl"}
    assert set(_data_files(root / "prism")) == {"utterances.jsonl"}
    assert set(_data_files(root / "personalllm")) == {"data/train-00000-of-00001.parquet"}
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    for n in sp.NAMES:
        planted = json.loads((root / f"{n}.planted.json").read_text())
        assert planted["seed"] == 0 and planted["dataset"] == n


def test_tldr_records_in_hub_schema(written, loaded):
    root, _ = written
    files = {f: [json.loads(x) for x in (root / "tldr" / "comparisons" / f).read_text().splitlines()]
             for f in ("train.jsonl", "validation.jsonl")}
    rows = files["train.jsonl"] + files["validation.jsonl"]
    assert len(rows) == N_USERS * PAIRS and files["validation.jsonl"]
    for r in rows:
        assert set(r) == {"info", "summaries", "choice", "worker", "batch", "split", "extra"}
        assert set(r["info"]) == {"id", "post", "title", "subreddit", "site", "article"}
        assert [set(s) for s in r["summaries"]] == [{"text", "policy", "note"}] * 2 and r["choice"] in (0, 1)
        assert 30 <= len(r["info"]["post"].split()) <= 60
    assert {r["split"] for r in files["train.jsonl"]} == {"train"}
    assert {r["split"] for r in files["validation.jsonl"]} == {"valid1"}
    # every written comparison is read: both files contribute, one pair per record
    recs = loaded["tldr"]
    assert len(recs) == len(rows)
    prompts = {r["prompt"] for r in recs}
    for f, rs in files.items():
        assert {prefdata.tldr_prompt(r["info"]) for r in rs} <= prompts, f
    chosen = Counter((r["worker"], r["summaries"][r["choice"]]["text"]) for r in rows)
    assert chosen == Counter((r["user"], r["chosen"]) for r in recs)


def test_prism_rows_in_hub_schema(written, loaded):
    root, _ = written
    rows = [json.loads(x) for x in (root / "prism" / "utterances.jsonl").read_text().splitlines()]
    keys = {"utterance_id", "interaction_id", "conversation_id", "user_id", "turn", "within_turn_id",
            "conversation_type", "user_prompt", "model_response", "model_name", "model_provider", "score",
            "if_chosen", "included_in_balanced_subset"}
    assert all(set(r) == keys for r in rows)
    turns = Counter((r["user_id"], r["conversation_id"], r["turn"]) for r in rows)
    assert len(turns) == N_USERS * PAIRS  # one max-vs-min pair per turn
    assert all(k == (4 if t == 0 else 2) for (_, _, t), k in turns.items())
    for key in turns:
        scores = [r["score"] for r in rows if (r["user_id"], r["conversation_id"], r["turn"]) == key]
        assert len(set(scores)) == len(scores) and all(1 <= s <= 100 for s in scores)
        assert [r["if_chosen"] for r in rows if (r["user_id"], r["conversation_id"], r["turn"]) == key] == \
            [s == max(scores) for s in scores]
    assert all(30 <= len(r["user_prompt"].split()) <= 60 for r in rows if r["turn"] == 0)
    assert len(loaded["prism"]) == len(turns)
    assert {r["pair_id"].rsplit("/", 1)[0] for r in loaded["prism"]} == {f"prism/{c}/{t}" for _, c, t in turns}


def test_personalllm_rows_in_hub_schema(written, loaded):
    root, _ = written
    df = pd.read_parquet(root / "personalllm" / "data" / "train-00000-of-00001.parquet")
    assert len(df) == 36
    rms = sorted(sp.REWARD_MODELS)
    expect = {"prompt", "subset", "prompt_id"} | {f"response_{j}{s}" for j in range(1, 9)
                                                  for s in ["", "_model"] + [f"_{rm}" for rm in rms]}
    assert set(df.columns) == expect
    assert all(df[f"response_{j}_{rm}"].dtype == float for j in range(1, 9) for rm in rms)
    for _, row in df.iterrows():  # 8 distinct responses per prompt
        assert len({row[f"response_{j}"] for j in range(1, 9)}) == 8
    recs = loaded["personalllm"]
    assert {r["prompt"] for r in recs} <= set(df["prompt"])
    assert len({r["prompt"] for r in recs}) > 0.75 * len(df)  # the users' random prompts cover most rows


@pytest.mark.parametrize("name", sp.NAMES)
def test_users_pairs_and_splits(loaded, name):
    recs = loaded[name]
    per_user = Counter(r["user"] for r in recs)
    assert len(per_user) == N_USERS
    assert set(per_user.values()) == ({10} if name == "personalllm" else {PAIRS})
    groups = {r["user"]: r["user_group"] for r in recs}
    assert Counter(groups.values()) == {"seen": 9, "unseen": 3}
    for user in per_user:
        splits = Counter(r["split"] for r in recs if r["user"] == user)
        assert splits["train"] >= 1 and splits["test"] >= 1
    assert all(r["chosen"] != r["rejected"] for r in recs)
    assert len({r["pair_id"] for r in recs}) == len(recs)
    for r in recs:
        assert 10 <= len(r["chosen"].split()) <= 25 and 10 <= len(r["rejected"].split()) <= 25


# ------------------------------------------------------------------------------- determinism, atomicity
def test_same_seed_same_bytes_other_seed_differs(written, tmp_path):
    root, _ = written
    again = sp.write_synthetic_prefsets(tmp_path / "a", seed=0)
    other = sp.write_synthetic_prefsets(tmp_path / "b", seed=1)
    for n in sp.NAMES:
        ref = _data_files(root / n)
        assert _data_files(again[n]) == ref
        assert (tmp_path / "a" / f"{n}.planted.json").read_bytes() == (root / f"{n}.planted.json").read_bytes()
        diff = _data_files(other[n])
        assert diff.keys() == ref.keys() and all(diff[k] != ref[k] for k in ref)
    # one set does not depend on which others are written
    only = sp.write_synthetic_prefsets(tmp_path / "c", names=("prism",), seed=0)
    assert list(only) == ["prism"] and _data_files(only["prism"]) == _data_files(root / "prism")
    assert not (tmp_path / "c" / "tldr").exists()


def test_failed_write_leaves_previous_set(tmp_path, monkeypatch):
    paths = sp.write_synthetic_prefsets(tmp_path, names=("personalllm",), seed=0)
    before = _data_files(paths["personalllm"])

    def broken(*a, **k):
        raise RuntimeError("disk full")

    import pyarrow.parquet as pq

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        sp.write_synthetic_prefsets(tmp_path, names=("personalllm",), seed=1)
    assert _data_files(paths["personalllm"]) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_sizes_are_parameters(tmp_path):
    paths = sp.write_synthetic_prefsets(tmp_path, names=("tldr", "prism"), seed=2, n_users=5, pairs_per_user=6,
                                        n_prompts=12)
    for n in ("tldr", "prism"):
        recs = prefdata.load(n, path=paths[n])
        assert Counter(Counter(r["user"] for r in recs).values()) == {6: 5}
    with pytest.raises(KeyError, match="unknown synthetic"):
        sp.write_synthetic_prefsets(tmp_path, names=("hh-rlhf",))
    with pytest.raises(ValueError, match="pairs_per_user"):
        sp.write_synthetic_prefsets(tmp_path, names=("tldr",), pairs_per_user=13, n_prompts=12)


# ------------------------------------------------------------------------------- planted preferences
FORMAL = {"regarding", "recommend", "furthermore", "author"}
CASUAL = {"lol", "tbh", "idk", "just"}


def features(text: str) -> np.ndarray:
    """Hand-made, independent of the generator: long (> 15 words), formal (more formal than casual
    markers), topic (names a topic keyword)."""
    words = re.findall(r"[a-z]+", text.lower())
    return np.array([len(text.split()) > 15, sum(w in FORMAL for w in words) > sum(w in CASUAL for w in words),
                     any(k in text.lower() for k in synthetic_scenes.KEYWORDS)], dtype=float)


def satisfies(user_type: str, text: str) -> bool:
    attr, sign, _ = sp.USER_TYPES[user_type]
    return bool(features(text)[sp.ATTRIBUTES.index(attr)]) == (sign > 0)


def test_generated_texts_show_exactly_their_attributes():
    import itertools

    for scene in synthetic_scenes.SCENES:
        for attrs in itertools.product((0, 1), repeat=3):
            for k in range(3):
                for make in (sp.summary_text, sp.response_text):
                    assert tuple(features(make(scene, attrs, k))) == attrs


@pytest.mark.parametrize("name", ["tldr", "prism"])
def test_labels_follow_planted_rules_with_noise(written, loaded, name):
    root, _ = written
    users = json.loads((root / f"{name}.planted.json").read_text())["users"]
    assert Counter(users.values()) == {"short": 3, "long": 3, "formal": 2, "casual": 2, "topic": 2}
    agree = [satisfies(users[r["user"]], r["chosen"]) and not satisfies(users[r["user"]], r["rejected"])
             for r in loaded[name]]
    assert 0.8 <= np.mean(agree) < 0.97  # ~10% label noise, never none


def _fit(D, l2=0.01, steps=300):
    """Logistic regression without intercept on feature differences (chosen - rejected), numpy GD."""
    w = np.zeros(D.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(D @ w)))
        w -= 0.5 * (-(D * (1 - p)[:, None]).mean(0) + l2 * w)
    return w


def _acc(w, D):
    s = D @ w
    return float(np.mean((s > 0) + 0.5 * (s == 0)))


@pytest.mark.parametrize("name", sp.NAMES)
def test_preferences_learnable_per_user_not_by_population(written, loaded, name):
    root, _ = written
    D = {}
    for r in loaded[name]:
        d = D.setdefault(r["user"], {"train": [], "test": [], "group": r["user_group"]})
        d[r["split"]].append(features(r["chosen"]) - features(r["rejected"]))
    seen = sorted(u for u, d in D.items() if d["group"] == "seen")
    for d in D.values():
        d["train"], d["test"] = np.array(d["train"]), np.array(d["test"])
        d["all"] = np.concatenate([d["train"], d["test"]])
        d["w"] = _fit(d["train"])
    w_pop = _fit(np.concatenate([D[u]["train"] for u in seen]))
    users = json.loads((root / f"{name}.planted.json").read_text())["users"]
    conflicting = seen if name == "personalllm" else [u for u in seen if users[u] != "topic"]
    personal = np.mean([_acc(D[u]["w"], D[u]["all"]) for u in seen])
    personal_test = np.mean(np.concatenate([(D[u]["test"] @ D[u]["w"] > 0) for u in seen]))
    population = np.mean([_acc(w_pop, D[u]["all"]) for u in conflicting])
    assert personal >= 0.8 and personal_test >= 0.65
    assert population <= 0.7 and personal - population >= 0.15
