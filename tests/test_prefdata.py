"""Loaders of the multi-user preference datasets (lib/data/prefdata.py) on small files in the hub schema."""
from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from lib.data import prefdata

FIELDS = {"pair_id", "task", "user", "user_group", "split", "prompt", "chosen", "rejected"}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def check_schema(recs, task, n_users):
    extra = {"position"} if task == "tldr" else set()  # TL;DR records where the chosen summary was shown
    assert recs and all(set(r) == FIELDS | extra for r in recs)
    assert all(r["task"] == task for r in recs)
    assert len({r["pair_id"] for r in recs}) == len(recs)
    groups = {r["user"]: r["user_group"] for r in recs}
    assert len(groups) == n_users and set(groups.values()) == {"seen", "unseen"}
    for user in groups:  # every user has train and test pairs
        assert {r["split"] for r in recs if r["user"] == user} == {"train", "test"}


# ------------------------------------------------------------------------------- TL;DR
def tldr_rows(n_workers=4, n=5):
    rows = []
    for w in range(n_workers):
        for j in range(n):
            rows.append({"info": {"id": f"t3_{w}{j}", "post": f"My post {j} about cats.", "title": f"Title {j}",
                                  "subreddit": "cats"},
                         "summaries": [{"text": f" short summary {w}-{j} ", "policy": "sup", "note": None},
                                       {"text": f"long summary {w}-{j}", "policy": "ppo", "note": None}],
                         "choice": (w + j) % 2, "worker": f"worker{w}", "split": "train", "batch": "b1",
                         "extra": {"confidence": 7}})
    return rows


def test_tldr_maps_fixture(tmp_path):
    rows = tldr_rows()
    recs = prefdata.load("tldr", path=write_jsonl(tmp_path / "comparisons.jsonl", rows), seed=0)
    check_schema(recs, "tldr", 4)
    assert Counter(r["user_group"] for r in recs)["unseen"] == 5  # 1 of 4 workers
    for r in recs:
        w, j = (int(c) for c in r["chosen"].split()[-1].split("-"))
        src = rows[w * 5 + j]
        assert r["user"] == src["worker"]
        assert r["chosen"] == src["summaries"][src["choice"]]["text"].strip()
        assert r["rejected"] == src["summaries"][1 - src["choice"]]["text"].strip()
        assert r["prompt"] == f"SUBREDDIT: r/cats\nTITLE: Title {j}\nPOST: My post {j} about cats.\n\nTL;DR:"
    again = prefdata.load("tldr", path=tmp_path / "comparisons.jsonl", seed=0)
    assert again == recs  # seeded


def test_tldr_reads_parquet_folder(tmp_path):
    (tmp_path / "d").mkdir()
    pd.DataFrame(tldr_rows()[:10]).to_parquet(tmp_path / "d" / "a.parquet")
    pd.DataFrame(tldr_rows()[10:]).to_parquet(tmp_path / "d" / "b.parquet")
    assert len(prefdata.load_tldr(path=tmp_path / "d")) == 20


def test_tldr_rejects_malformed(tmp_path):
    rows = tldr_rows()
    rows[3]["summaries"] = rows[3]["summaries"][:1]
    f = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(ValueError, match=r"bad\.jsonl: record 3.*'summaries'"):
        prefdata.load_tldr(path=f)
    rows = tldr_rows()
    rows[7]["worker"] = ""
    with pytest.raises(ValueError, match=r"record 7: field 'worker'"):
        prefdata.load_tldr(path=write_jsonl(tmp_path / "bad2.jsonl", rows))


def test_hub_unreachable_gives_instructions(monkeypatch):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RuntimeError, match="hf download --repo-type dataset openai/summarize_from_feedback"):
        prefdata.load_tldr()


# ------------------------------------------------------------------------------- PRISM
def prism_rows(n_users=4, n_turns=4):
    rows = []
    for u in range(n_users):
        for t in range(n_turns):
            k = 4 if t == 0 else 2
            for i in range(k):
                rows.append({"utterance_id": f"ut{u}{t}{i}", "interaction_id": f"int{u}{t}", "conversation_id": f"c{u}",
                             "user_id": f"user{u}", "turn": t, "within_turn_id": i, "user_prompt": f"question {u} {t}",
                             "model_response": f"answer {u} {t} {i}", "model_name": "m", "score": 10 * ((i + u) % k) + 5,
                             "if_chosen": False})
    return rows


def test_prism_maps_fixture(tmp_path):
    rows = prism_rows()
    recs = prefdata.load("prism", path=write_jsonl(tmp_path / "utterances.jsonl", rows))
    check_schema(recs, "prism", 4)
    assert len(recs) == 4 * 4  # one max-vs-min pair per turn
    score = {r["model_response"]: r["score"] for r in rows}
    for r in recs:
        u, t = r["prompt"].split()[1:]
        turn = [x for x in rows if x["user_id"] == f"user{u}" and x["turn"] == int(t)]
        assert r["user"] == f"user{u}"
        assert score[r["chosen"]] == max(x["score"] for x in turn)
        assert score[r["rejected"]] == min(x["score"] for x in turn)
    all_pairs = prefdata.load_prism(path=tmp_path / "utterances.jsonl", pairs="all")
    assert len(all_pairs) == 4 * (6 + 1 + 1 + 1) and all(score[r["chosen"]] > score[r["rejected"]] for r in all_pairs)


def test_prism_rejects_malformed(tmp_path):
    rows = prism_rows()
    rows[5]["score"] = None
    with pytest.raises(ValueError, match=r"record 5: field 'score'"):
        prefdata.load_prism(path=write_jsonl(tmp_path / "u.jsonl", rows))


# ------------------------------------------------------------------------------- PersonalLLM
RMS = ["gemma_2b", "mistral_raft", "oasst_deberta_v3"]


def personalllm_frame(n=30, n_resp=8, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        row = {"prompt": f"prompt {i}", "subset": "x", "prompt_id": i}
        for j in range(1, n_resp + 1):
            row[f"response_{j}"] = f"response {i}.{j}"
            for k, rm in enumerate(RMS):
                row[f"response_{j}_{rm}"] = float(rng.normal(loc=3 * k, scale=1 + k))
        rows.append(row)
    return pd.DataFrame(rows)


def test_personalllm_simulated_users(tmp_path):
    df = personalllm_frame()
    df.to_parquet(tmp_path / "train.parquet")
    recs = prefdata.load("personalllm", path=tmp_path / "train.parquet", n_users=6, prompts_per_user=10, alpha=0.1,
                         seed=3)
    check_schema(recs, "personalllm", 6)
    S = np.stack([[[df.loc[i, f"response_{j}_{rm}"] for rm in RMS] for j in range(1, 9)] for i in range(len(df))])
    S = (S - S.mean((0, 1))) / S.std((0, 1))
    W = prefdata.dirichlet_users(6, len(RMS), 0.1, 3)
    for r in recs:
        u = int(r["user"][4:])
        i, jc = (int(x) for x in r["chosen"].split()[1].split("."))
        jr = int(r["rejected"].split()[1].split(".")[1])
        assert r["prompt"] == f"prompt {i}"
        assert S[i, jc - 1] @ W[u] > S[i, jr - 1] @ W[u]
    # different users disagree on some comparisons (the point of the simulation)
    assert len({tuple(np.round(w, 3)) for w in W}) == 6


def test_personalllm_rejects_malformed(tmp_path):
    df = personalllm_frame()
    rows = df.to_dict("records")
    rows[4]["response_2_mistral_raft"] = "high"
    with pytest.raises(ValueError, match=r"record 4: field 'response_2_mistral_raft'"):
        prefdata.load_personalllm(path=write_jsonl(tmp_path / "p.jsonl", rows), n_users=3)


def test_split_users_needs_two_users():
    with pytest.raises(ValueError, match="need 2"):
        prefdata.split_users({"a": [{"pair_id": "1"}] * 5}, "t")
    with pytest.raises(ValueError, match=r"t: split_users: min_pairs=1 is out of range; allowed: a whole number >= 2"):
        prefdata.split_users(_by_user(3, 1), "t", min_pairs=1)


@pytest.mark.parametrize("kw,says", [
    ({"test_frac": 1.5}, "test_frac=1.5 is out of range; allowed: a finite number in (0, 1)"),
    ({"unseen_frac": -0.5}, "unseen_frac=-0.5 is out of range"),
    ({"max_users": 0}, "max_users=0 is out of range; allowed: a whole number >= 2 or None"),
    ({"max_users": -2}, "max_users=-2 is out of range"),
    ({"max_pairs_per_user": 1}, "max_pairs_per_user=1 is out of range; allowed: a whole number >= 2 or None "
                                "(a train and a test pair per user)"),
])
def test_split_settings_that_would_empty_or_bend_the_data_name_themselves(kw, says):
    """max_users: 0 used to keep everyone, -2 to slice; max_pairs_per_user: 1 was blamed on identical pairs."""
    with pytest.raises(ValueError, match=re.escape(says)):
        prefdata.split_users(_by_user(4, 6), "t", **kw)


@pytest.mark.parametrize("kw,says", [({"alpha": 0}, "alpha=0 is out of range; allowed: a finite number > 0"),
                                     ({"n_users": -3}, "n_users=-3 is out of range"),
                                     ({"alpha": float("nan")}, "alpha=nan is not finite")])
def test_personalllm_settings_are_checked_before_reading(tmp_path, kw, says):
    with pytest.raises(ValueError, match=re.escape("personalllm: " + says)):
        prefdata.load_personalllm(path=tmp_path / "never-read.parquet", **kw)


def test_personalllm_skips_response_model_columns(tmp_path):
    """The hub rows also name the LLM of each response (``response_<j>_model``, text): not a reward model."""
    df = personalllm_frame()
    for j in range(1, 9):
        df[f"response_{j}_model"] = f"llm-{j}"
    df.to_parquet(tmp_path / "train.parquet")
    recs = prefdata.load_personalllm(path=tmp_path / "train.parquet", n_users=6, prompts_per_user=10, seed=3)
    df.drop(columns=[f"response_{j}_model" for j in range(1, 9)]).to_parquet(tmp_path / "plain.parquet")
    assert recs == prefdata.load_personalllm(path=tmp_path / "plain.parquet", n_users=6, prompts_per_user=10, seed=3)


def test_personalllm_seed_also_seeds_the_split(monkeypatch, tmp_path):
    personalllm_frame().to_parquet(tmp_path / "train.parquet")
    seen = {}
    real = prefdata.split_users
    monkeypatch.setattr(prefdata, "split_users",
                        lambda by_user, task, **kw: seen.update(kw) or real(by_user, task, **kw))
    prefdata.load_personalllm(path=tmp_path / "train.parquet", n_users=4, prompts_per_user=8, seed=5, test_frac=0.3)
    assert seen.pop("counts").keys() == {"tied_scores", "identical_texts"}  # the loader's drop counts so far
    assert seen == {"seed": 5, "test_frac": 0.3}


# ------------------------------------------------------------------------------- split_users (documented rule)
def _by_user(n_users, n_pairs):
    return {f"u{u:02d}": [{"pair_id": f"u{u:02d}/{j}"} for j in range(n_pairs)] for u in range(n_users)}


@pytest.mark.parametrize("n_users,unseen_frac,n_unseen", [(12, 0.25, 3), (10, 0.25, 2), (6, 0.25, 2), (4, 0.25, 1),
                                                          (2, 0.9, 1), (3, 0.1, 1), (5, 0.0, 0)])
def test_split_users_unseen_count_follows_documented_rounding(n_users, unseen_frac, n_unseen):
    recs = prefdata.split_users(_by_user(n_users, 6), "t", unseen_frac=unseen_frac)
    groups = {r["user"]: r["user_group"] for r in recs}
    assert len(groups) == n_users and sum(g == "unseen" for g in groups.values()) == n_unseen


def test_split_users_matches_documented_procedure():
    import random

    by_user = _by_user(9, 7)
    by_user["tiny"] = [{"pair_id": "tiny/0"}]  # fewer than min_pairs: dropped
    recs = prefdata.split_users(by_user, "t", unseen_frac=0.25, test_frac=0.25, seed=7)
    rng = random.Random(7)
    order = sorted(u for u in by_user if u != "tiny")
    rng.shuffle(order)
    expect = []
    for user in sorted(order):
        pairs = list(by_user[user])
        rng.shuffle(pairs)
        n_test = min(max(1, round(0.25 * len(pairs))), len(pairs) - 1)
        expect += [p | {"task": "t", "user": user, "user_group": "unseen" if user in order[:2] else "seen",
                        "split": "test" if j < n_test else "train"} for j, p in enumerate(pairs)]
    assert recs == expect
    assert recs == prefdata.split_users(by_user, "t", unseen_frac=0.25, test_frac=0.25, seed=7)
    assert recs != prefdata.split_users(by_user, "t", unseen_frac=0.25, test_frac=0.25, seed=8)


@pytest.mark.parametrize("n_pairs,test_frac", [(4, 0.25), (9, 0.25), (10, 0.25), (4, 0.5), (4, 0.9), (5, 0.95)])
def test_split_users_every_user_keeps_train_and_test_pairs(n_pairs, test_frac):
    recs = prefdata.split_users(_by_user(4, n_pairs), "t", test_frac=test_frac)
    for user in {r["user"] for r in recs}:
        splits = Counter(r["split"] for r in recs if r["user"] == user)
        assert splits["train"] >= 1 and splits["test"] >= 1, (user, splits)


@pytest.mark.parametrize("n, frac, n_unseen", [(12, 0.25, 3), (10, 0.25, 2), (6, 0.25, 2), (2, 0.25, 1),
                                               (2, 0.75, 1), (1, 0.25, 0), (12, 0.0, 0), (4, 1.0, 3)])
def test_user_groups_one_rule(n, frac, n_unseen):
    order = [f"u{i}" for i in range(n)][::-1]  # already shuffled: the first users of the order are unseen
    groups = prefdata.user_groups(order, frac)
    assert [u for u in order if groups[u] == "unseen"] == order[:n_unseen]
    assert list(groups) == order and set(groups.values()) <= {"seen", "unseen"}


@pytest.mark.parametrize("n, frac, n_test", [(2, 0.25, 1), (4, 0.25, 1), (10, 0.25, 2), (16, 0.25, 4), (3, 0.9, 2)])
def test_n_test_pairs(n, frac, n_test):
    assert prefdata.n_test_pairs(n, frac) == n_test


# ------------------------------------------------------------------------------- real files as they come
def test_tldr_skips_empty_summaries_and_reads_article_records(tmp_path):
    """A hub comparisons split holds CNN/DM records (info.article, no post) and a few empty summary texts:
    the empty ones are skipped, counted and warned once; the article ones get the ARTICLE template."""
    rows = tldr_rows(n_workers=4, n=6)
    for j in (0, 7, 14):  # empty, blank and missing texts: real records, not a broken file
        rows[j]["summaries"][j % 2]["text"] = ["", "   ", None][(j // 7)]
    rows[7]["summaries"][1].pop("text")
    for r in rows[18:]:
        r["info"] = {"id": r["info"]["id"], "article": "An article about cats.", "site": "cnn"}
    rows[20]["summaries"][1]["text"] = rows[20]["summaries"][0]["text"]  # identical texts
    drops = {}
    with pytest.warns(UserWarning, match=r"tldr: skipped 3 TL;DR comparisons with an empty or missing summary text; "
                                         r"1 comparisons whose two texts are identical"):
        recs = prefdata.load("tldr", path=write_jsonl(tmp_path / "c.jsonl", rows), drops=drops)
    assert drops == {"empty_summary": 3, "identical_texts": 1}
    assert len(recs) == 24 - 4
    art = [r for r in recs if r["prompt"].startswith("ARTICLE:")]
    assert len(art) == 5 and all(r["prompt"] == "ARTICLE: An article about cats.\n\nTL;DR:" for r in art)
    assert all(r["chosen"].strip() and r["rejected"].strip() for r in recs)


def test_tldr_file_mostly_without_summaries_is_an_error(tmp_path):
    rows = tldr_rows()
    for r in rows[:11]:  # 11 of 20
        r["summaries"][0]["text"] = ""
    with pytest.raises(ValueError, match=r"tldr: 11 of 20 records are TL;DR comparisons with an empty"):
        prefdata.load_tldr(path=write_jsonl(tmp_path / "c.jsonl", rows))


def test_users_below_min_pairs_are_counted_and_named_when_none_is_left(tmp_path):
    rows = tldr_rows(n_workers=3, n=5)
    rows += [dict(tldr_rows(n_workers=1, n=1)[0], worker="lonely")]
    drops = {}
    with pytest.warns(UserWarning, match="1 users with fewer than min_pairs pairs; 1 pairs of those users"):
        prefdata.load_tldr(path=write_jsonl(tmp_path / "c.jsonl", rows), drops=drops)
    assert drops == {"users_below_min_pairs": 1, "pairs_of_users_below_min_pairs": 1}
    for r in rows[:5]:
        r["summaries"][1]["text"] = r["summaries"][0]["text"]
    with pytest.raises(ValueError, match=r"only 0 user\(s\) with >= 6 pairs.*Dropped on the way: 5 comparisons whose "
                                         r"two texts are identical; 1 users with fewer than min_pairs pairs; 5 pairs"):
        prefdata.load_tldr(path=write_jsonl(tmp_path / "d.jsonl", rows[:10]), min_pairs=6)


def test_prism_counts_single_response_turns_and_ties(tmp_path):
    rows = prism_rows()
    n_turns = len({(r["user_id"], r["conversation_id"], r["turn"]) for r in rows})
    first = (rows[0]["user_id"], rows[0]["conversation_id"], rows[0]["turn"])
    rows = [r for r in rows if (r["user_id"], r["conversation_id"], r["turn"]) != first or r is rows[0]]
    drops = {}
    with pytest.warns(UserWarning, match="1 PRISM turns with fewer than two rated responses"):
        recs = prefdata.load_prism(path=write_jsonl(tmp_path / "u.jsonl", rows), drops=drops, min_pairs=3)
    assert drops == {"single_response_turn": 1}  # the fixture's scores never tie within a turn
    assert len(recs) == n_turns - 1
    # a turn whose two responses have the same score
    rows = [r for r in rows if r["utterance_id"] not in ("ut010", "ut011")] + [
        dict(rows[1], utterance_id="x1", turn=1, score=50), dict(rows[1], utterance_id="x2", turn=1, score=50,
                                                                   model_response="other answer")]
    drops = {}
    with pytest.warns(UserWarning, match="1 comparisons whose scores tie"):
        prefdata.load_prism(path=write_jsonl(tmp_path / "v.jsonl", rows), drops=drops, min_pairs=2)
    assert drops["tied_scores"] == 1


def test_numbers_written_as_strings_are_read_and_counted(tmp_path):
    """An export that quoted its numbers (choice: "1", turn: "0") was coerced by datasets without a word."""
    rows = tldr_rows()
    rows[3]["choice"], rows[4]["choice"] = "1", " 0 "
    drops = {}
    with pytest.warns(UserWarning, match=r"2 records whose number fields \(choice, turn, score\) are strings"):
        recs = prefdata.load_tldr(path=write_jsonl(tmp_path / "c.jsonl", rows), drops=drops)
    assert drops == {"labels_as_strings": 2}
    src = {r["chosen"] for r in recs}
    assert rows[3]["summaries"][1]["text"].strip() in src and rows[4]["summaries"][0]["text"].strip() in src
    rows[5]["choice"] = "first"
    with pytest.raises(ValueError, match=r"record 5: field 'choice' must be an integer, got 'first'"):
        prefdata.load_tldr(path=write_jsonl(tmp_path / "d.jsonl", rows))


def test_prism_rating_outside_1_to_100_is_skipped_and_a_file_of_them_refused(tmp_path):
    rows = prism_rows()
    rows[0]["score"], rows[2]["turn"] = -1e9, "0"
    drops = {}
    with pytest.warns(UserWarning, match="1 PRISM ratings outside 1-100"):
        prefdata.load_prism(path=write_jsonl(tmp_path / "u.jsonl", rows), drops=drops)
    assert drops == {"score_out_of_range": 1, "labels_as_strings": 1}
    for r in rows:
        r["score"] = 1000
    with pytest.raises(ValueError, match=r"prism: 40 of 40 records are PRISM ratings outside 1-100: more than 50%"):
        prefdata.load_prism(path=write_jsonl(tmp_path / "v.jsonl", rows))
