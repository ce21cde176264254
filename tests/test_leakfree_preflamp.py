"""Pref-LaMP measures preference, not copy detection: no input gives its answer away, no query's answer
sits in its own profile, users are whole, and other_rule contrasts styles on the same facts."""
import json
import warnings

import pytest

from lib.data import lamp, preflamp, synthetic

LAMP7 = lamp.TASKS["LaMP-7"].instruction


def fake_paraphraser(prompts):
    """A stand-in for the base policy that paraphrases every 4th tweet badly: it returns the tweet upper-cased
    (a leak the guard must catch); otherwise a rewording that never contains the tweet."""
    out = []
    for p in prompts:
        tweet = p.split(": ", 1)[1]
        if sum(map(ord, tweet)) % 4 == 0:
            out.append(tweet.upper())
        else:
            out.append("someone posted about " + " ".join(sorted(set(tweet.lower().split()))))
    return out


def fake_policy(prompts):
    """A deterministic stand-in for the rejected-response policy (first words of the input, title-cased)."""
    return [" ".join(p.split(": ", 1)[1].split()[:6]).title() for p in prompts]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    synthetic.write_synthetic_lamp(root, n_users=8, profile_size=10, queries_per_user=2, seed=11)
    return root


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("pref") / "p"
    with pytest.warns(UserWarning, match="paraphrase"):
        m = preflamp.build(corpus, out, generator=fake_paraphraser, corpus="synthetic", rejected="other_rule",
                           max_pairs_per_user=10, seed=0)
    return m, preflamp.load_pairs(out), preflamp.load_queries(out)


def test_no_pair_prompt_contains_its_chosen(built):
    _, pairs, _ = built
    assert {p["task"] for p in pairs} == {"LaMP-4", "LaMP-5", "LaMP-7"}
    bad = [p["pair_id"] for p in pairs if p["chosen"].lower() in p["prompt"].lower()]
    assert not bad, bad


def test_lamp7_prompt_is_the_paraphrase_and_leaks_are_dropped(built):
    m, pairs, _ = built
    p7 = [p for p in pairs if p["task"] == "LaMP-7"]
    assert p7
    for p in p7:
        assert p["prompt"] == LAMP7 + fake_paraphraser([LAMP7 + p["chosen"]])[0]
        assert p["chosen"] not in p["prompt"]
    c = m["tasks"]["LaMP-7"]  # every profile item became a pair or a counted drop
    assert c["pairs_dropped_leak"] > 0 and c["pairs"] + c["pairs_dropped_leak"] + c["pairs_dropped_identical"] == 8 * 10
    assert m["tasks"]["LaMP-4"]["pairs_dropped_leak"] == 0
    assert m["paraphraser"] is None  # a bare function has no description; policy_generator sets one


def test_no_query_answer_in_its_own_profile(built, corpus):
    _, _, queries = built
    assert queries
    for q in queries:
        outs = {" ".join(it["output"].lower().split()) for it in q["profile"]}
        assert " ".join(q["reference"].lower().split()) not in outs, q["query_id"]
        assert q["reference"].lower() not in q["prompt"].lower(), q["query_id"]
    # the raw corpus too, both splits, and at the smoke profile's size
    synthetic.write_synthetic_lamp(corpus.parent / "smoke", n_users=12, profile_size=16, queries_per_user=2, seed=0)
    for root in (corpus, corpus.parent / "smoke"):
        for task, spec in lamp.TASKS.items():
            for split in lamp.SPLITS:
                for q in lamp.load_task(root, task, split):
                    outs = {it[spec.output_field].lower() for it in q["profile"]}
                    assert q["output"].lower() not in outs, (root, task, q["id"])


def test_no_rule_output_is_contained_in_its_source(corpus):
    facts = json.loads((corpus / "facts.json").read_text())["facts"]
    rules = ["question", "colon", "lowercase", "number", "short", "vocab:finally", "exclaim", "hashtag"]
    for key, by_id in facts.items():
        for i, f in by_id.items():
            for r in rules:
                assert synthetic.apply_rule(r, f).lower() not in f["source"].lower(), (key, i, r)


def test_users_are_seen_or_unseen_never_both(built):
    _, pairs, queries = built
    for task in ("LaMP-4", "LaMP-5", "LaMP-7"):
        seen = {r["user"] for r in pairs + queries if r["task"] == task and r["user_group"] == "seen"}
        unseen = {r["user"] for r in pairs + queries if r["task"] == task and r["user_group"] == "unseen"}
        assert seen and unseen and not seen & unseen


def test_other_rule_is_the_same_facts_in_another_users_style(built, corpus):
    _, pairs, queries = built
    rules = json.loads((corpus / "rules.json").read_text())["rules"]
    facts = synthetic.load_facts(corpus)
    rule_of_user = {(q["task"], q["user"]): q["rule"] for q in queries}
    for p in pairs:
        own = rule_of_user[(p["task"], p["user"])]
        others = {r for (t, u), r in rule_of_user.items() if t == p["task"] and u != p["user"] and r != own}
        assert p["rejected"] != p["chosen"]
        assert synthetic.follows_rule(own, p["chosen"])
        assert not synthetic.follows_rule(own, p["rejected"]), p["pair_id"]
        f = facts[f"{p['task']}/dev"][p["source_id"]]
        assert any(synthetic.follows_rule(r, p["rejected"]) and synthetic.apply_rule(r, f) == p["rejected"]
                   for r in others), p["pair_id"]
    assert len(set(rules["LaMP-4/dev"].values())) > 1


def test_other_rule_is_deterministic(corpus, tmp_path):
    kw = dict(generator=fake_paraphraser, corpus="synthetic", rejected="other_rule", seed=3)
    with pytest.warns(UserWarning):
        a = preflamp.build(corpus, tmp_path / "a", **kw)
    with pytest.warns(UserWarning):
        b = preflamp.build(corpus, tmp_path / "b", **kw)
    assert a["files"] == b["files"] and "facts.json" in a["inputs"]


def test_clear_errors(corpus, tmp_path):
    with pytest.raises(ValueError, match="synthetic"):
        preflamp.build(corpus, tmp_path / "x", generator=fake_paraphraser, corpus="lamp", rejected="other_rule")
    with pytest.raises(ValueError, match="LaMP-7.*generator"):
        preflamp.build(corpus, tmp_path / "y", corpus="synthetic", rejected="other_rule")
    with pytest.raises(ValueError, match=r"rejected='nope' is not allowed; allowed: one of \['policy', 'other_user'"):
        preflamp.build(corpus, tmp_path / "z", generator=fake_paraphraser, corpus="synthetic", rejected="nope")
    # without LaMP-7 no generator is needed for other_rule
    m = preflamp.build(corpus, tmp_path / "w", corpus="synthetic", rejected="other_rule", tasks=["LaMP-4"])
    assert m["tasks"]["LaMP-4"]["pairs"] > 0 and not (tmp_path / "x").exists()


def test_policy_rejected_with_paraphrased_lamp7(corpus, tmp_path):
    """rejected='policy': one generator paraphrases the LaMP-7 tweets (leaky ones asked again with the
    fallback instruction) and then answers the paraphrased prompts; a fallback that does not leak keeps the pair."""
    calls = []
    fallback = preflamp.PARAPHRASE_INSTRUCTIONS[1]

    def gen(prompts):
        calls.append(list(prompts))
        if len(calls) == 1:
            return fake_paraphraser(prompts)
        if len(calls) == 2:
            return ["a person mentions " + p.split(": ", 1)[1][::-1] for p in prompts]
        return fake_policy(prompts)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is dropped
        m = preflamp.build(corpus, tmp_path / "p", generator=gen, corpus="synthetic", rejected="policy",
                           tasks=["LaMP-7"])
    pairs = preflamp.load_pairs(tmp_path / "p")
    assert len(calls) == 3 and all(p.startswith(LAMP7) for p in calls[0])
    leaky = [p[len(LAMP7):] for p, para in zip(calls[0], fake_paraphraser(calls[0]))
             if preflamp.paraphrase_leaks(para, p[len(LAMP7):])]
    assert leaky and calls[1] == [fallback + t for t in leaky]  # only the leaky tweets are asked again
    assert m["tasks"]["LaMP-7"]["pairs_dropped_leak"] == 0
    rescued = [p for p in pairs if p["chosen"] in leaky]
    assert rescued and all(p["prompt"] == LAMP7 + "a person mentions " + p["chosen"][::-1] for p in rescued)
    assert all(p["chosen"].lower() not in p["prompt"].lower() for p in pairs)
    assert sorted(calls[2]) == sorted(p["prompt"] for p in pairs)  # rejected answers the paraphrased input
