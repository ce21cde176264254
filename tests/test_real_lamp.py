"""Real LaMP files as users hand them: one profile per question, small profiles, neighbours sharing
headlines, empty golds, enormous inputs, files placed by hand (tests/real_lamp_fixture.py)."""
import json
import random
import re
import subprocess
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from lib.data import lamp, preflamp, rejected
from lib.data.lamp import LaMPFormatError

from real_lamp_fixture import LONG_CHARS, write_real_lamp

TASKS = ("LaMP-4", "LaMP-5", "LaMP-7")


def fake_gen(prompts):
    """Base-policy stand-in: paraphrases (LaMP-7) and rejected outputs that never contain the text given."""
    return ["someone posted about " + " ".join(sorted(set(re.sub(r"^[^:]*: ", "", p).lower().split()))[:8])
            for p in prompts]


def copycat(copied):
    """A policy that reproduces the user's output for the prompts in ``copied`` (prompt -> output)."""
    return lambda prompts: [copied.get(p, g) for p, g in zip(prompts, fake_gen(prompts))]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return write_real_lamp(tmp_path_factory.mktemp("real") / "lamp")


def build(raw, out, gen=fake_gen, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return preflamp.build(raw, out, generator=gen, corpus="lamp", **{"min_profile": 2, **kw})


def check_pairs(pairs):
    """Every kept user has a train and a test pair; no rejected equals its chosen."""
    splits = defaultdict(set)
    for p in pairs:
        splits[(p["task"], p["user"])].add(p["split"])
        assert lamp.norm_text(p["rejected"]) != lamp.norm_text(p["chosen"]), p["pair_id"]
    assert splits and all(s == {"train", "test"} for s in splits.values()), splits
    return splits


def test_fixture_has_the_properties_of_real_lamp(raw, tmp_path):
    t0 = time.perf_counter()
    write_real_lamp(tmp_path / "again")
    assert time.perf_counter() - t0 < 1
    for task in TASKS:
        qs = lamp.load_task(raw, task, "dev")  # the validators accept it
        assert len(preflamp.group_users(qs)) == len(qs) == 8  # every question its own profile
        sizes = [len(q["profile"]) for q in qs]
        assert min(sizes) == 2 and 3 in sizes and max(sizes) == 12
        assert qs[0]["id"] == f"{task[-1]}100" and qs[0]["profile"][0]["id"] == f"{task[-1]}1000"
        field = lamp.TASKS[task].output_field
        outs = [{it[field] for it in q["profile"]} for q in qs]
        assert outs[0] & outs[1] and len(outs[2] & outs[3]) == 2  # neighbours share outputs verbatim
        assert not qs[1]["output"].strip() and len(qs[2]["input"]) > LONG_CHARS
        assert all(q["input"].startswith(lamp.TASKS[task].instruction) for q in qs)
        assert any(ord(c) > 0x1F000 for q in qs for it in q["profile"] for c in it[field])  # emoji
    assert set(lamp.load_task(raw, "LaMP-7", "dev")[0]["profile"][0]) == {"id", "text"}
    subprocess.run([sys.executable, "tests/real_lamp_fixture.py", str(tmp_path / "cli"), "--users", "8"], check=True,
                   cwd=Path(__file__).resolve().parents[1], capture_output=True)
    f = lamp.file_path(raw, "LaMP-5", "dev", "questions")
    assert (tmp_path / "cli" / f.relative_to(raw)).read_bytes() == f.read_bytes()


def test_realistic_fixture_has_the_real_sizes_and_keeps_the_quirks(raw, tmp_path):
    """--realistic (for wall-time measurements): big profiles, per-task input lengths, same quirks; the default
    corpus is unchanged by the option's existence (its files are byte-identical to the module fixture's)."""
    root = write_real_lamp(tmp_path / "real", realistic=True, n_users=6)
    words = {}
    for task in TASKS:
        qs = lamp.load_task(root, task, "dev")
        sizes = [len(q["profile"]) for q in qs]
        assert sizes[:2] == [2, 3] and all(20 <= s <= 60 for s in sizes[2:])
        assert not qs[1]["output"].strip() and len(qs[2]["input"]) > LONG_CHARS
        words[task] = np.median([len(q["input"].split()) for q in qs[3:]])
    assert 25 <= words["LaMP-4"] <= 55 and 120 <= words["LaMP-5"] <= 220 and words["LaMP-7"] <= 45, words
    write_real_lamp(tmp_path / "plain")
    f = lamp.file_path(raw, "LaMP-4", "dev", "questions")
    assert (tmp_path / "plain" / f.relative_to(raw)).read_bytes() == f.read_bytes()


def test_the_ci_configuration_keeps_enough_users(raw, tmp_path):
    """min_profile=2, rejected='policy': after every documented drop, >= 4 users per task with >= 2 pairs."""
    m = build(raw, tmp_path / "p", rejected="policy")
    pairs = preflamp.load_pairs(tmp_path / "p")
    splits = check_pairs(pairs)
    for task in TASKS:
        assert sum(t == task for t, _ in splits) >= 4 and m["tasks"][task]["users"] >= 4


@pytest.mark.parametrize("rejected", ["policy", "other_user"])
def test_no_user_left_after_min_profile_is_a_clear_error(raw, tmp_path, rejected):
    with pytest.raises(ValueError, match=r"LaMP-4: .*8 users in the file; min_profile=13 dropped 8 of 8 users.*"
                                         r"lower min_profile"):
        build(raw, tmp_path / "p", rejected=rejected, tasks=["LaMP-4"], min_profile=13)
    assert not (tmp_path / "p").exists() and not list(tmp_path.iterdir())


def test_policy_copying_every_output_writes_nothing(raw, tmp_path):
    """Zero pairs (the policy reproduced every output) is an error naming task and counts, and an existing
    out_dir stays exactly as it was."""
    qs = lamp.load_task(raw, "LaMP-5", "dev")
    spec = lamp.TASKS["LaMP-5"]
    copied = {spec.instruction + it["abstract"].strip()[:1200]: it["title"] for q in qs for it in q["profile"]}
    out = tmp_path / "out"
    build(raw, out, tasks=["LaMP-4"], rejected="policy")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=r"LaMP-5: no user left.*8 users in the file.*8 more had fewer than 2 "
                                         r"pairs left after dropping 48 pairs whose rejected equals the chosen"):
        build(raw, out, gen=copycat(copied), tasks=["LaMP-4", "LaMP-5"], rejected="policy")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left behind


def test_other_user_skips_a_neighbours_identical_headline(raw, tmp_path):
    build(raw, tmp_path / "o", rejected="other_user", tasks=["LaMP-4", "LaMP-5"])
    pairs = preflamp.load_pairs(tmp_path / "o")
    check_pairs(pairs)
    m = preflamp.load_manifest(tmp_path / "o")
    assert all(c["pairs_dropped_identical"] == 0 and c["users"] == 8 for c in m["tasks"].values())
    # the BM25-nearest other item carries the same headline: the next-ranked differing one is taken
    items = {"a": [{"id": "a1", "source": "storm hits the harbour at night", "output": "Storm Hits Harbour"}],
             "b": [{"id": "b1", "source": "storm hits the harbour at night again", "output": "storm  hits harbour"},
                   {"id": "b2", "source": "storm over the harbour", "output": "Harbour braces"}]}
    assert rejected.other_user_rejected(items, "LaMP-4")[("a", "a1")] == "Harbour braces"
    with pytest.raises(ValueError, match="LaMP-4.*at least two users"):
        rejected.other_user_rejected({"a": items["a"], "b": []}, "LaMP-4")


def test_users_with_too_few_pairs_are_dropped_and_split_after(raw, tmp_path):
    """The policy copies some outputs: users left with < 2 pairs go (warned, counted, with their queries);
    seen/unseen and train/test are assigned after the drops; the counts add up."""
    qs = {q["id"]: q for q in lamp.load_task(raw, "LaMP-4", "dev")}
    instr = lamp.TASKS["LaMP-4"].instruction
    copy_ids = {"4100", "4103", "4104"}  # 4100 (2 items) loses all pairs, 4103 all but one, 4104 one
    copied = {instr + it["text"].strip()[:1200]: it["title"] for qid in copy_ids
              for j, it in enumerate(qs[qid]["profile"]) if qid != "4104" or j == 0}
    copied.pop(instr + qs["4103"]["profile"][-1]["text"].strip()[:1200])
    with pytest.warns(UserWarning, match=r"LaMP-4: 2 users dropped with their queries"):
        m = preflamp.build(raw, tmp_path / "p", generator=copycat(copied), corpus="lamp", tasks=["LaMP-4"],
                           rejected="policy", min_profile=2, max_pairs_per_user=16)
    c = m["tasks"]["LaMP-4"]
    pairs, queries = preflamp.load_pairs(tmp_path / "p"), preflamp.load_queries(tmp_path / "p")
    check_pairs(pairs)
    assert c["users_dropped_too_few_pairs"] == 2 and c["pairs_dropped_with_users"] == 1 and c["users"] == 6
    assert {p["user"] for p in pairs} == {q["user"] for q in queries} | {"4101"} == set(qs) - {"4100", "4103"}
    total = sum(len(q["profile"]) for q in qs.values())
    assert c["pairs"] + c["pairs_dropped_identical"] + c["pairs_dropped_with_users"] + c["pairs_dropped_leak"] == total
    assert c["queries"] + c["queries_dropped_empty_gold"] == c["users"]
    order = sorted(qs)
    random.Random("LaMP-4-0").shuffle(order)  # the same shuffled order, less the dropped users
    order = [u for u in order if u not in {"4100", "4103"}]
    unseen = set(order[: round(len(order) * 0.25)])
    assert {p["user"] for p in pairs if p["user_group"] == "unseen"} == unseen and c["unseen_users"] == len(unseen)
    for u in order:  # train/test as lib.data.prefdata.split_users
        n = sum(p["user"] == u for p in pairs)
        assert sum(p["user"] == u and p["split"] == "test" for p in pairs) == min(max(1, round(0.25 * n)), n - 1)


def test_lamp7_user_whose_every_paraphrase_leaks_is_dropped(raw, tmp_path):
    tweets = {it["text"] for it in lamp.load_task(raw, "LaMP-7", "dev")[5]["profile"]}

    def leaky(prompts):
        return [re.sub(r"^[^:]*: ", "", p) if re.sub(r"^[^:]*: ", "", p) in tweets else g
                for p, g in zip(prompts, fake_gen(prompts))]

    with pytest.warns(UserWarning, match="LaMP-7: 1 users dropped"):
        m = preflamp.build(raw, tmp_path / "p", generator=leaky, corpus="lamp", tasks=["LaMP-7"], min_profile=2)
    c = m["tasks"]["LaMP-7"]
    assert c["users_dropped_too_few_pairs"] == 1 and c["pairs_dropped_leak"] >= len(tweets)
    assert "7105" not in {p["user"] for p in preflamp.load_pairs(tmp_path / "p")}
    check_pairs(preflamp.load_pairs(tmp_path / "p"))


def test_empty_golds_are_dropped_and_long_inputs_cut(raw, tmp_path):
    with pytest.warns(UserWarning) as rec:
        m = preflamp.build(raw, tmp_path / "p", generator=fake_gen, corpus="lamp", min_profile=2,
                           rejected="policy", max_query_chars=5000)
    msgs = " ".join(str(w.message) for w in rec)
    queries = preflamp.load_queries(tmp_path / "p")
    for task in TASKS:
        c = m["tasks"][task]
        assert c["queries_dropped_empty_gold"] == 1 and c["queries_truncated"] == 1
        assert f"{task}: 1 queries dropped: their gold output is empty" in msgs
        assert f"{task}: 1 query inputs longer than max_query_chars=5000" in msgs
        long = next(q for q in queries if q["query_id"] == f"{task}/{task[-1]}102")
        assert len(long["prompt"]) == 5000 and long["prompt"].startswith(lamp.TASKS[task].instruction)
    assert all(q["reference"].strip() for q in queries)
    assert preflamp.DEFAULTS["max_query_chars"] == 4000 and m["params"]["max_query_chars"] == 5000


# --- files placed by hand ----------------------------------------------------------------------

def no_network(*a, **k):
    raise AssertionError("the network was used")


def test_download_adopts_valid_files_placed_by_hand(tmp_path, monkeypatch):
    monkeypatch.setattr(lamp, "_fetch", no_network)
    root = write_real_lamp(tmp_path / "lamp", tasks=["LaMP-4"])
    m = lamp.download(root, tasks=["LaMP-4"], splits=["dev"])
    for kind in ("questions", "outputs"):
        f = lamp.file_path(root, "LaMP-4", "dev", kind)
        entry = m[str(f.relative_to(root))]
        assert entry["source"] == "local" and "url" not in entry
        assert entry["bytes"] == f.stat().st_size and entry["sha256"] == preflamp.sha256_file(f)
    assert json.loads((root / "manifest.json").read_text()) == m
    assert lamp.download(root, tasks=["LaMP-4"], splits=["dev"]) == m  # again: nothing to do


@pytest.mark.parametrize("bad", ["invalid", "lone"])
def test_download_refuses_a_bad_hand_placed_file(tmp_path, monkeypatch, bad):
    monkeypatch.setattr(lamp, "_fetch", no_network)
    root = write_real_lamp(tmp_path / "lamp", tasks=["LaMP-4"])
    qf, of = lamp.file_path(root, "LaMP-4", "dev", "questions"), lamp.file_path(root, "LaMP-4", "dev", "outputs")
    if bad == "invalid":
        qf.write_text(qf.read_text(encoding="utf-8")[:-50], encoding="utf-8")
    else:
        of.unlink()
    data = qf.read_bytes()
    with pytest.raises(LaMPFormatError, match="truncated JSON" if bad == "invalid" else "without its partner") as e:
        lamp.download(root, tasks=["LaMP-4"], splits=["dev"])
    assert str(qf) in str(e.value) and qf.read_bytes() == data and not (root / "manifest.json").exists()


def test_force_downloads_hand_placed_files_again(tmp_path, monkeypatch):
    root = write_real_lamp(tmp_path / "lamp", tasks=["LaMP-4"])
    files = {lamp.url("LaMP-4", "dev", k): lamp.file_path(root, "LaMP-4", "dev", k).read_bytes()
             for k in ("questions", "outputs")}
    calls = []
    monkeypatch.setattr(lamp, "_fetch", lambda u, *a: (calls.append(u), files[u])[1])
    m = lamp.download(root, tasks=["LaMP-4"], splits=["dev"], force=True)
    assert sorted(calls) == sorted(files) and m["LaMP_4/dev/dev_questions.json"]["url"] in files


def test_a_repeated_profile_item_id_is_skipped_and_counted(raw, tmp_path):
    """A profile that lists one item id twice built two pairs with one pair_id, and notebook 02 stopped at
    "PairFeatures: duplicate pair_id" with no id; the repeat is now skipped, counted and warned."""
    import shutil

    copy = tmp_path / "lamp"
    shutil.copytree(raw, copy)
    qf = lamp.file_path(copy, "LaMP-4", "dev", "questions")
    qs = json.loads(qf.read_text())
    q = next(q for q in qs if len(q["profile"]) >= 3)
    q["profile"].append(dict(q["profile"][0], title="Another headline under the same id"))
    qf.write_text(json.dumps(qs))
    with pytest.warns(UserWarning, match=r"LaMP-4: 1 profile items skipped: an earlier item of the same profile"):
        m = preflamp.build(copy, tmp_path / "p", generator=fake_gen, corpus="lamp", tasks=["LaMP-4"],
                           rejected="policy", min_profile=2, max_pairs_per_user=16)
    assert m["tasks"]["LaMP-4"]["profile_items_skipped_duplicate_id"] == 1
    ids = [p["pair_id"] for p in preflamp.load_pairs(tmp_path / "p")]
    assert len(ids) == len(set(ids))
    assert "Another headline under the same id" not in {p["chosen"] for p in preflamp.load_pairs(tmp_path / "p")}


def test_an_empty_questions_file_is_an_error(raw, tmp_path):
    qf = tmp_path / "dev_questions.json"
    qf.write_text("[]")
    with pytest.raises(LaMPFormatError, match=r"dev_questions\.json: the list of questions is empty"):
        lamp.validate_questions(lamp.parse_json(qf.read_bytes(), qf), "LaMP-4", qf)


def test_duplicate_pair_ids_are_named():
    import torch

    from lib.rewards import PairFeatures

    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"1 pair_id\(s\) occur more than once, e.g. \['LaMP-4/u/1'\]"):
        PairFeatures("b", "lm_last", ["LaMP-4/u/1", "LaMP-4/u/2", "LaMP-4/u/1"], x, x)


def test_other_user_fallback_memory_is_bounded(monkeypatch):
    """One user with thousands of profile items and rejected='other_user': nearly every item's top 20 is the
    user's own, and the fallback used to rank every item against the whole corpus at once (9 GB for 20,000
    items). It now ranks against the other users' items in bounded chunks, and still finds them."""
    import bm25s

    calls = []
    real = bm25s.BM25.retrieve

    def spy(self, q, *a, k=10, **kw):
        calls.append(len(q.ids) * k)
        return real(self, q, *a, k=k, **kw)

    monkeypatch.setattr(bm25s.BM25, "retrieve", spy)
    monkeypatch.setattr(rejected, "FALLBACK_CELLS", 2_000)
    big = [{"id": f"b{j}", "source": f"river boat harbour {j} sail", "output": f"Boats {j}"} for j in range(600)]
    small = {f"u{v}": [{"id": f"s{v}{j}", "source": f"mountain snow {j}", "output": f"Snow {v}{j}"} for j in range(3)]
             for v in range(2)}
    out = rejected.other_user_rejected({"big": big, **small}, "LaMP-4")
    assert all(out[("big", it["id"])].startswith("Snow") for it in big)  # another user's output, always
    fallback = calls[1:]
    assert fallback and max(fallback) <= 2_000, fallback  # queries x k per call within the bound


@pytest.mark.parametrize("text, why", [
    ("The article: The article: The article: about", "repetition"), ("The TSA's TSA's TSA's new rule", "repetition"),
    ("The headline: Dogs learn to read", "template_prefix"), ("  ", "empty"), ("...", "empty"),
    ("Dogs learn to read in Ohio schools", ""), ("A headline about the title of a book", ""),
])
def test_degenerate_rejected_responses_are_named(text, why):
    assert rejected.degenerate_reason(text) == why


def junk_gen(prompts):
    """A small policy's zero-shot outputs: every third prompt gets a template prefix, every fourth a repetition loop."""
    return [("The headline: " if i % 3 == 0 else "") + ("x x x x" if i % 4 == 1 else g)
            for i, g in enumerate(fake_gen(prompts))]


def test_degenerate_policy_negatives_are_measured_and_can_be_dropped(raw, tmp_path):
    kept = build(raw, tmp_path / "keep", gen=junk_gen, tasks=["LaMP-4"], rejected="policy")["tasks"]["LaMP-4"]
    n_junk = kept["rejected_degenerate_template_prefix"] + kept["rejected_degenerate_repetition"]
    assert kept["rejected_degenerate_template_prefix"] > 0 and kept["rejected_degenerate_repetition"] > 0
    assert kept["pairs_dropped_degenerate"] == 0  # "keep" only measures
    junk = [p for p in preflamp.load_pairs(tmp_path / "keep") if rejected.degenerate_reason(p["rejected"])]
    assert len(junk) == n_junk
    dropped = build(raw, tmp_path / "drop", gen=junk_gen, tasks=["LaMP-4"], rejected="policy",
                    rejected_degenerate="drop")["tasks"]["LaMP-4"]
    assert dropped["pairs_dropped_degenerate"] == n_junk
    assert not any(rejected.degenerate_reason(p["rejected"]) for p in preflamp.load_pairs(tmp_path / "drop"))
    assert dropped["pairs"] + dropped["pairs_dropped_with_users"] == kept["pairs"] - n_junk
    other = build(raw, tmp_path / "ou", tasks=["LaMP-4"], rejected="other_user")["tasks"]["LaMP-4"]
    assert "rejected_degenerate_repetition" not in other  # only policy negatives are generated, so only they are measured
