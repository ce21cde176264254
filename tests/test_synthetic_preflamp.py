"""Synthetic LaMP-format corpus and the Pref-LaMP builder (determinism, schema, resumability)."""
import json

import pytest

from lib.data import gencache, lamp, preflamp, synthetic


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    synthetic.write_synthetic_lamp(root, n_users=6, profile_size=6, queries_per_user=2, seed=3)
    return root


def fake_generator(prompts):
    """A deterministic stand-in for the policy: the first six words of the source, title-cased."""
    return [" ".join(p.split(": ", 1)[1].split()[:6]).title() for p in prompts]


def test_synthetic_is_valid_lamp_with_known_rules(corpus):
    rules = json.loads((corpus / "rules.json").read_text())["rules"]
    for task in lamp.TASKS:
        for split in lamp.SPLITS:
            qs = lamp.load_task(corpus, task, split)  # the real loader accepts it
            assert len(qs) == 12
            r = rules[f"{task}/{split}"]
            assert all(synthetic.follows_rule(r[q["id"]], q["output"]) for q in qs)
            for q in qs:  # the user's profile outputs follow the same rule
                field = lamp.TASKS[task].output_field
                assert all(synthetic.follows_rule(r[q["id"]], it[field]) for it in q["profile"])


def test_synthetic_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    synthetic.write_synthetic_lamp(a, n_users=3, profile_size=4, seed=7)
    synthetic.write_synthetic_lamp(b, n_users=3, profile_size=4, seed=7)
    files = sorted(p.relative_to(a) for p in a.rglob("*.json"))
    assert files and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    synthetic.write_synthetic_lamp(tmp_path / "c", n_users=3, profile_size=4, seed=8)
    assert (tmp_path / "c" / files[0]).read_bytes() != (a / files[0]).read_bytes()


def test_rule_checkers_discriminate():
    facts = {"base": "The museum unveils a new wing downtown", "topic": "museum", "n": 3}
    outs = {r: synthetic.apply_rule(r, facts) for r in ["question", "colon", "lowercase", "number", "short",
                                                        "vocab:finally", "exclaim", "hashtag"]}
    for r, text in outs.items():
        assert synthetic.follows_rule(r, text)
        assert not synthetic.follows_rule(r, facts["base"]), r  # the neutral output follows no rule


def test_build_is_deterministic_and_schema(corpus, tmp_path):
    m1 = preflamp.build(corpus, tmp_path / "a", generator=fake_generator, corpus="synthetic", seed=1)
    m2 = preflamp.build(corpus, tmp_path / "b", generator=fake_generator, corpus="synthetic", seed=1)
    for f in m1["files"]:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert m1["files"] == m2["files"] and m1["corpus"] == "synthetic"
    pairs, queries = preflamp.load_pairs(tmp_path / "a"), preflamp.load_queries(tmp_path / "a")
    assert set(pairs[0]) == {"pair_id", "task", "user", "user_group", "split", "prompt", "chosen", "rejected",
                             "source_id"}
    assert len({p["pair_id"] for p in pairs}) == len(pairs)
    for _task, c in m1["tasks"].items():  # LaMP-7: a user whose tweets the fake paraphraser leaks has < 2 pairs
        n = 6 - c["users_dropped_too_few_pairs"]
        assert c["users"] == n and c["unseen_users"] == round(n * 0.25) and c["queries"] == 2 * n
    assert m1["tasks"]["LaMP-4"]["users"] == m1["tasks"]["LaMP-5"]["users"] == 6
    # users are whole: a user is seen or unseen in every record; queries carry the rule and the profile
    groups = {}
    for r in pairs + queries:
        groups.setdefault(r["user"], set()).add(r["user_group"])
    assert all(len(g) == 1 for g in groups.values())
    assert all(q["rule"] and synthetic.follows_rule(q["rule"], q["reference"]) for q in queries)
    assert all(p["chosen"] != p["rejected"] for p in pairs)
    m3 = preflamp.build(corpus, tmp_path / "c", generator=fake_generator, corpus="synthetic", seed=2)
    assert m3["files"] != m1["files"]


def test_build_failure_leaves_no_partial_output(corpus, tmp_path):
    def broken(prompts):
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        preflamp.build(corpus, tmp_path / "out", generator=broken, corpus="synthetic")
    assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())


def test_generation_cache_resumes(tmp_path):
    prompts = [f"Generate a headline for the following article: item {i}" for i in range(10)]
    calls = []

    def flaky(batch):
        calls.append(list(batch))
        if len(calls) == 3:
            raise KeyboardInterrupt  # interrupted in the third batch
        return [p[-6:] for p in batch]

    cache = tmp_path / "gen.jsonl"
    gen = gencache.cached_generator(flaky, cache, key="fake", batch_size=3)
    with pytest.raises(KeyboardInterrupt):
        gen(prompts)
    done = sum(len(b) for b in calls[:2])
    calls.clear()
    out = gencache.cached_generator(lambda b: (calls.append(list(b)), [p[-6:] for p in b])[1], cache, "fake", 3)(prompts)
    assert sum(len(b) for b in calls) == len(prompts) - done  # only the missing batches ran
    fresh = gencache.cached_generator(lambda b: [p[-6:] for p in b], None, "fake", 3)(prompts)
    assert out == fresh


def test_other_user_rejected_and_paraphrase_guard(corpus, tmp_path):
    preflamp.build(corpus, tmp_path / "o", generator=fake_generator, corpus="synthetic", rejected="other_user")
    pairs = preflamp.load_pairs(tmp_path / "o", "LaMP-4")
    own = {(p["user"], p["chosen"]) for p in pairs}
    assert all((p["user"], p["rejected"]) not in own for p in pairs)
    assert preflamp.load_pairs(tmp_path / "o", "LaMP-7")  # LaMP-7 other_user works on the paraphrased inputs
    leaks = preflamp.paraphrase_leaks
    assert leaks("", "so happy today") and leaks("  So  HAPPY today ", "so happy today")
    assert leaks("Honestly, so happy today!", "so happy today") and leaks("x", "x")
    assert not leaks("I feel great this day", "so happy today") and not leaks("happy", "so happy today")


def test_small_profiles_are_skipped_with_a_warning(tmp_path):
    synthetic.write_synthetic_lamp(tmp_path / "raw", tasks=["LaMP-5"], n_users=3, profile_size=2)
    with pytest.warns(UserWarning, match="min_profile"):  # no user left: an error, never an empty build
        with pytest.raises(ValueError, match=r"LaMP-5.*min_profile=4 dropped 3 of 3 users.*lower min_profile"):
            preflamp.build(tmp_path / "raw", tmp_path / "o", generator=fake_generator, corpus="synthetic",
                           tasks=["LaMP-5"], min_profile=4)
    assert not (tmp_path / "o").exists()
    m = preflamp.build(tmp_path / "raw", tmp_path / "o", generator=fake_generator, corpus="synthetic",
                       tasks=["LaMP-5"], min_profile=2)
    assert m["tasks"]["LaMP-5"]["users_skipped_small_profile"] == 0 and m["tasks"]["LaMP-5"]["pairs"] == 6


def test_outputs_have_normal_permissions_and_portable_manifest(corpus, tmp_path):
    import os
    import stat

    preflamp.build(corpus, tmp_path / "p", generator=fake_generator, corpus="synthetic")
    mode = stat.S_IMODE(os.stat(tmp_path / "p" / "manifest.json").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # not mkstemp's 0600
    from lib import REPO_ROOT
    assert preflamp._display_path(REPO_ROOT / "data" / "raw" / "synthetic") == "data/raw/synthetic"
    assert preflamp._display_path(tmp_path) == str(tmp_path.resolve())


def test_generation_cache_repairs_a_cut_last_line(tmp_path):
    """A kill mid-write leaves a last line without newline: the next open drops it (warned once, file rewritten),
    so a new record is not glued onto it; bad lines (not an object, a key missing) are handled the same way."""
    import warnings

    path = tmp_path / "gen.jsonl"
    cache = gencache.GenerationCache(path, "k")
    cache.add(["a", "b", "c"], ["A", "B", "C"])
    text = path.read_text()
    path.write_text(text[: len(text) - 9])  # the record of "c" cut mid-way
    with pytest.warns(UserWarning, match=r"gen.jsonl: line\(s\) \[3\] unreadable"):
        cache = gencache.GenerationCache(path, "k")
    assert path.read_text().endswith("\n") and (cache.get("a"), cache.get("c")) == ("A", None)
    cache.add(["d"], ["D"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second load is clean
        again = gencache.GenerationCache(path, "k")
    assert [again.get(p) for p in "abcd"] == ["A", "B", None, "D"]
    with open(path, "a") as f:
        f.write('[1, 2]\n{"k": "x"}\n')
    with pytest.warns(UserWarning, match=r"line\(s\) \[4, 5\]"):
        gencache.GenerationCache(path, "k")
    assert len(path.read_text().splitlines()) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gencache.GenerationCache(path, "k").get("d") == "D"
