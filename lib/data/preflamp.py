"""Pref-LaMP: preference pairs built from LaMP, with each user's real output as ground truth.

:func:`build` is a pure function of (LaMP data, policy generator, parameters, seed).

Per user (a user is a LaMP profile: real LaMP gives every question its own profile, the synthetic
corpus gives several questions one profile, and questions are grouped by their profile's ids):

* **pairs** from the profile: prompt = the task's LaMP instruction applied to the profile item's
  source (article, abstract), chosen = the user's own output, rejected = a non-personalised output
  for the same prompt (see below). Pairs whose rejected is empty or equals the chosen (case- and
  space-insensitively) are dropped (counted in ``pairs_dropped_identical``). Profile items with an empty
  output (or, but for LaMP-7, an empty source) are skipped (``profile_items_skipped_empty``), and so is an
  item whose id an earlier item of its profile has (``profile_items_skipped_duplicate_id``).
* **LaMP-7** profiles hold only the user's tweets, so the input of a profile pair is a *paraphrase of
  the tweet by the base policy* (the generator, prompted with LaMP-7's own instruction
  ``"Paraphrase the following tweet without any explanation before or after it: " + tweet``), as
  LaMP built its own LaMP-7 inputs with a model paraphrase; the pair prompt is the LaMP-7 instruction
  applied to that paraphrase. The input must not give the answer away: a paraphrase that is empty,
  equals the tweet (case- and space-insensitively) or contains the whole tweet is asked for once more
  with a fallback instruction (third-person description, :data:`PARAPHRASE_INSTRUCTIONS`, parameter
  ``paraphrase_instructions``); if that leaks too, the pair is dropped with a warning and counted in
  ``pairs_dropped_leak``. Paraphrases go through the same cached generator
  as the rejected responses (cache key: model, max_new_tokens, greedy; one JSONL cache under the data
  cache), so a LaMP-7 build needs the generator whatever ``rejected`` is. The queries' LaMP-7 profile
  items carry an empty ``source`` (LaMP-7 profiles have none).
* **rejected** constructions: ``"policy"`` (the default, real data): the base policy's zero-shot
  greedy output; ``"other_user"``: another user's output for the most similar source (BM25), the
  best-ranked one that differs from the chosen (real LaMP neighbours share headlines verbatim): a test
  of topical relevance more than of personalisation; ``"other_rule"`` (synthetic corpus only, the
  smoke default): the *same facts* rendered under the rule of another user (a seeded choice among
  the other users whose rendering differs from the chosen and does not follow this user's rule), the
  clean contrast "same content, someone else's style". It reads the facts the synthetic writer keeps
  in ``facts.json``. A ``"policy"`` rejected response can be machine junk that no user writes (a 135M policy's
  "The article: The article: ...", "The TSA's TSA's TSA's ...", "The headline: ..."): then the pair tests "is this
  junk", not "whose is it". Each one is counted by reason (``rejected_degenerate_empty`` / ``_repetition`` /
  ``_template_prefix``, :func:`lib.data.rejected.degenerate_reason`) and, with ``rejected_degenerate="drop"``,
  its pair is dropped (``pairs_dropped_degenerate``); the default ``"keep"`` only measures.
* **queries**: the user's held-out LaMP questions, with the user's real output as the reference and
  the profile for ICL. A question whose gold output is empty or blank cannot be scored by ROUGE: it is
  dropped with a warning (``queries_dropped_empty_gold``). An input longer than ``max_query_chars``
  (default 4000 characters, about 1000 tokens; LaMP's baselines cut inputs at 512 tokens) is cut to that length, keeping its start (the task instruction) and
  cutting the end, with a warning (``queries_truncated``).
* **users**: users with fewer than ``min_profile`` profile items are skipped
  (``users_skipped_small_profile``); the rest are shuffled (seeded) and cut to ``max_users``. A user
  left with fewer than 2 pairs (a train and a test pair) once the pairs above are dropped (identical,
  LaMP-7 leak guard, empty outputs) is dropped with its queries, with a warning
  (``users_dropped_too_few_pairs``; its pairs: ``pairs_dropped_with_users``). Only then are the kept
  users, in the same shuffled order, split into *seen* (their train pairs train reward models) and
  *unseen* (only a few-shot adaptation) by :func:`lib.data.prefdata.user_groups`, the rule of the preference
  datasets: the first ``min(max(1, round(unseen_frac * n)), n - 1)`` are unseen (0 when ``unseen_frac`` is 0).
  Each user's kept pairs are split by :func:`lib.data.prefdata.n_test_pairs`: the first
  ``n_test = min(max(1, round(test_frac * n)), n - 1)`` are test, the rest train, so every kept user
  has at least one of each. A task with no user left is a ``ValueError`` naming the task, the number of
  users in the file and the setting that dropped them; :func:`build` then writes nothing.

Generations are cached per prompt in a JSONL file that grows batch by batch, so an interrupted
build resumes where it stopped; the output folder itself is written atomically.
"""
from __future__ import annotations

import json
import random
import re
import warnings
from pathlib import Path

from . import lamp
from ..core.io import atomic_dir, read_jsonl, sha256_file, write_json, write_jsonl
from ..core.params import RULES, check_values
from .prefdata import n_test_pairs, user_groups
from .rejected import DEGENERATE, kept_pairs

DEFAULTS = dict(tasks=("LaMP-4", "LaMP-5", "LaMP-7"), split="dev", max_users=None, max_pairs_per_user=12,
                min_profile=4, unseen_frac=0.25, test_frac=0.25, rejected="policy", max_source_chars=1200,
                max_query_chars=4000, paraphrase_instructions=None, rejected_degenerate="keep", seed=0)
MIN_PAIRS = 2  # a kept user needs a train and a test pair
# counts added for real LaMP (every build_task reports them; see the module docstring)
NEW_COUNTS = ("users_dropped_too_few_pairs", "pairs_dropped_with_users", "profile_items_skipped_empty",
              "profile_items_skipped_duplicate_id",
              "queries_dropped_empty_gold", "queries_truncated")
REJECTED = ("policy", "other_user", "other_rule")
# How the base policy is asked for the paraphrase that becomes a LaMP-7 pair input: LaMP-7's own
# instruction first; a tweet whose paraphrase leaks (see paraphrase_leaks) is asked once more with the
# next instruction (a small policy often copies a tweet that differs from its own output only by case or
# punctuation); a pair is dropped only when every instruction leaks.
PARAPHRASE_INSTRUCTIONS = (lamp.TASKS["LaMP-7"].instruction,
                           "Describe what happened in the following tweet in the third person, in one sentence: ")


def paraphrase_leaks(paraphrase: str, tweet: str) -> bool:
    """Whether a paraphrase would give its tweet away: empty, equal to it or containing all of it
    (case- and space-insensitively)."""
    para, tw = lamp.norm_text(paraphrase), lamp.norm_text(tweet)
    return not para or para == tw or (bool(tw) and tw in para)


def clean_generation(text: str) -> str:
    """First non-empty line, without surrounding quotes or a 'Title:'/'Headline:' label."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    t = lines[0] if lines else ""
    t = re.sub(r"^(\*\*)?(title|headline|paraphrase|tweet)\s*:\s*(\*\*)?\s*", "", t, flags=re.I)
    return t.strip().strip('"').strip("*").strip()


def profile_item(task: str, item: dict, max_chars: int) -> dict:
    """``{id, source, output}`` of a LaMP profile item; LaMP-7 items have no source (empty)."""
    spec = lamp.task_spec(task)
    out = item[spec.output_field].strip()
    src = item[spec.source_field] if spec.source_field else ""
    return {"id": item["id"], "source": src.strip()[:max_chars], "output": out}


def group_users(questions: list[dict]) -> dict[str, list[dict]]:
    """user id -> questions; a user is a profile (the first question's id names it)."""
    by_profile: dict[tuple, list[dict]] = {}
    for q in questions:
        by_profile.setdefault(tuple(p["id"] for p in q["profile"]), []).append(q)
    return {qs[0]["id"]: qs for qs in by_profile.values()}


def _check_task_params(p: dict, task: str, generator, paraphraser, facts) -> None:
    if task == "LaMP-7" and paraphraser is None:
        raise ValueError("LaMP-7 pair inputs are paraphrases of the tweets by the base policy: pass a generator "
                         f"(see lib.decoding.greedy.policy_generator) also when rejected={p['rejected']!r}")
    if p["rejected"] == "policy" and generator is None:
        raise ValueError("rejected='policy' needs a generator (see lib.decoding.greedy.policy_generator)")
    if p["rejected"] == "other_rule" and facts is None:
        raise ValueError("rejected='other_rule' needs the facts of the synthetic corpus (facts.json)")


def _no_user_left(task: str, counts: dict, p: dict) -> ValueError:
    """The error of a task with no user (hence no pair) left: the counts say which setting dropped whom."""
    n, small = counts["users_in_lamp"], counts["users_skipped_small_profile"]
    msg = (f"{task}: no user left to build Pref-LaMP from: {n} users in the file; min_profile={p['min_profile']} "
           f"dropped {small} of {n} users (fewer profile items)")
    if small == n:
        return ValueError(msg + "; lower min_profile (users of real LaMP often have only 2-3 profile items)")
    return ValueError(msg + f"; {counts['users_dropped_too_few_pairs']} more had fewer than {MIN_PAIRS} pairs left "
                      f"after dropping {counts['pairs_dropped_identical']} pairs whose rejected equals the chosen "
                      f"(rejected={p['rejected']!r}: e.g. the policy reproduced the user's output) and "
                      f"{counts['pairs_dropped_leak']} leaking LaMP-7 pairs")


def _user_order(users: dict, task: str, p: dict, counts: dict) -> list[str]:
    """User ids with at least ``min_profile`` profile items, sorted, shuffled (seeded), capped at ``max_users``."""
    uids = sorted(users)
    small = [u for u in uids if len(users[u][0]["profile"]) < p["min_profile"]]
    if small:
        warnings.warn(f"{task}: {len(small)} users have fewer than min_profile={p['min_profile']} profile items "
                      "and are skipped (documented: too few pairs to train or adapt on)")
        counts["users_skipped_small_profile"] = len(small)
    uids = [u for u in uids if u not in small]
    if not uids:
        raise _no_user_left(task, counts, p)
    random.Random(f"{task}-{p['seed']}").shuffle(uids)
    return uids[: p["max_users"]] if p["max_users"] else uids


def _usable_items(task: str, profile: list[dict], p: dict, counts: dict) -> list[dict]:
    """The profile items with an output (and a source, but for LaMP-7), sorted by id; the others are counted, and
    so is an item whose id an earlier item of the same profile already has (the first is kept: two pairs with
    one id would collide downstream)."""
    need_source = bool(lamp.task_spec(task).source_field)
    first = {}
    for it in profile:
        first.setdefault(it["id"], it)
    if len(first) < len(profile):
        counts["profile_items_skipped_duplicate_id"] += len(profile) - len(first)
        profile = list(first.values())
    prof = [profile_item(task, it, p["max_source_chars"]) for it in profile]
    ok = [it for it in prof if it["output"] and (it["source"] or not need_source)]
    counts["profile_items_skipped_empty"] += len(prof) - len(ok)
    return sorted(ok, key=lambda it: it["id"])


def _paraphrase_sources(chosen_items: dict, task: str, paraphraser, p: dict, counts: dict) -> dict[tuple, str]:
    """LaMP-7: (user, item id) -> the base policy's paraphrase of the tweet, the leaking ones left out."""
    keys = sorted((u, it["id"]) for u in chosen_items for it in chosen_items[u])
    tweet = {(u, it["id"]): it["output"] for u in chosen_items for it in chosen_items[u]}
    source, todo = {}, keys
    for instruction in p["paraphrase_instructions"] or PARAPHRASE_INSTRUCTIONS:
        if not todo:
            break
        paras = paraphraser([instruction + tweet[k] for k in todo])
        source.update({k: para.strip()[: p["max_source_chars"]] for k, para in zip(todo, paras)
                       if not paraphrase_leaks(para, tweet[k])})
        todo = [k for k in todo if k not in source]
    counts["pairs_dropped_leak"] = len(todo)
    if todo:
        warnings.warn(f"{task}: {len(todo)} of {len(keys)} profile pairs dropped: the paraphrase of the tweet was "
                      "empty, equal to it or contained it (the input would give the answer away), whatever the "
                      "instruction (see PARAPHRASE_INSTRUCTIONS)")
    return source


def _drop_thin_users(order: list[str], kept: dict, task: str, p: dict, counts: dict) -> list[str]:
    """``order`` without the users left with fewer than MIN_PAIRS pairs (warned, counted); raises if none is left."""
    thin = [u for u in order if len(kept[u]) < MIN_PAIRS]
    if thin:
        counts["users_dropped_too_few_pairs"] = len(thin)
        counts["pairs_dropped_with_users"] = sum(len(kept[u]) for u in thin)
        warnings.warn(f"{task}: {len(thin)} users dropped with their queries: fewer than {MIN_PAIRS} pairs left "
                      "(a train and a test pair) after dropping identical, leaking or empty pairs")
    order = [u for u in order if u not in thin]
    if not order:
        raise _no_user_left(task, counts, p)
    return order


def _user_queries(task: str, u: str, group: str, qs: list[dict], profile: list[dict], p: dict,
                  counts: dict) -> list[dict]:
    """The user's LaMP questions as queries: an empty gold is dropped, an overlong input cut (both counted)."""
    keep = max(p["max_query_chars"], len(lamp.task_spec(task).instruction))
    out = []
    for q in qs:
        if not q["output"].strip():
            counts["queries_dropped_empty_gold"] += 1
            continue
        prompt = q["input"]
        if len(prompt) > keep:
            counts["queries_truncated"] += 1
            prompt = prompt[:keep]
        out.append({"query_id": f"{task}/{q['id']}", "task": task, "user": u, "user_group": group,
                    "prompt": prompt, "reference": q["output"], "profile": profile, "rule": q.get("rule")})
    return out


def _warn_query_drops(task: str, counts: dict, p: dict) -> None:
    if counts["queries_dropped_empty_gold"]:
        warnings.warn(f"{task}: {counts['queries_dropped_empty_gold']} queries dropped: their gold output is "
                      "empty (ROUGE cannot score them)")
    if counts["profile_items_skipped_duplicate_id"]:
        warnings.warn(f"{task}: {counts['profile_items_skipped_duplicate_id']} profile items skipped: an earlier "
                      "item of the same profile has their id (the first is kept)")
    if counts["queries_truncated"]:
        warnings.warn(f"{task}: {counts['queries_truncated']} query inputs longer than max_query_chars="
                      f"{p['max_query_chars']} characters were cut to that length (the end is cut)")


def build_task(questions: list[dict], task: str, generator, params: dict, facts: dict | None = None,
               paraphraser=None) -> tuple[list[dict], list[dict], dict]:
    """Pairs, queries and counts of one task (pure: no file I/O beyond the generators' cache).

    ``generator`` makes the rejected responses (``rejected="policy"``); ``paraphraser`` (default:
    ``generator``) the LaMP-7 pair inputs; ``facts`` (id -> facts, synthetic corpus) feeds
    ``rejected="other_rule"``. Raises ``ValueError`` naming the task and the counts when no user is left.
    """
    from .rejected import other_rule_rejected, other_user_rejected

    p = {**DEFAULTS, **params}
    check_values("preflamp.build_task", RULES, {k: v for k, v in p.items() if k in RULES})
    paraphraser = paraphraser or generator
    _check_task_params(p, task, generator, paraphraser, facts)
    users = group_users(questions)
    counts = {"users_in_lamp": len(users), "users_skipped_small_profile": 0, "pairs_dropped_identical": 0,
              "pairs_dropped_leak": 0, **{k: 0 for k in NEW_COUNTS}}
    order = _user_order(users, task, p, counts)
    spec = lamp.task_spec(task)
    items = {u: _usable_items(task, users[u][0]["profile"], p, counts) for u in sorted(order)}
    chosen_items = {u: random.Random(f"{task}-{u}-{p['seed']}").sample(items[u], min(len(items[u]), p["max_pairs_per_user"]))
                    for u in sorted(order)}
    if spec.source_field:
        source = {(u, it["id"]): it["source"] for u in chosen_items for it in chosen_items[u]}
    else:  # LaMP-7: the input is the base policy's paraphrase of the tweet, never the tweet itself
        source = _paraphrase_sources(chosen_items, task, paraphraser, p, counts)
        chosen_items = {u: [it for it in its if (u, it["id"]) in source] for u, its in chosen_items.items()}
    prompts = {k: spec.instruction + src for k, src in source.items()}
    if p["rejected"] == "policy":
        keys = sorted(prompts)
        rejected = dict(zip(keys, generator([prompts[k] for k in keys])))
    elif p["rejected"] == "other_user":
        with_source = {u: [{**it, "source": source[(u, it["id"])]} for it in chosen_items[u]]
                       for u in chosen_items} if not spec.source_field else items
        rejected = other_user_rejected(with_source, task)
    else:
        rule_of_user = {u: users[u][0].get("rule") for u in order}
        rejected = other_rule_rejected(chosen_items, rule_of_user, facts, task, p["seed"])
    if p["rejected"] == "policy":  # measured (and dropped with rejected_degenerate="drop") only for policy negatives
        counts |= {f"rejected_degenerate_{why}": 0 for why in DEGENERATE} | {"pairs_dropped_degenerate": 0}
    kept = kept_pairs(chosen_items, rejected, counts, p["rejected_degenerate"] if p["rejected"] == "policy" else None)
    uids = _drop_thin_users(order, kept, task, p, counts)  # seen/unseen and train/test only after every drop
    group = user_groups(uids, p["unseen_frac"])
    n_unseen = sum(g == "unseen" for g in group.values())
    pairs, queries = [], []
    for u in sorted(uids):
        n = len(kept[u])
        n_test = n_test_pairs(n, p["test_frac"])
        for j, (it, rej) in enumerate(kept[u]):
            pairs.append({"pair_id": f"{task}/{u}/{it['id']}", "task": task, "user": u, "user_group": group[u],
                          "split": "test" if j < n_test else "train", "prompt": prompts[(u, it["id"])],
                          "chosen": it["output"], "rejected": rej, "source_id": it["id"]})
        queries += _user_queries(task, u, group[u], users[u], items[u], p, counts)
    _warn_query_drops(task, counts, p)
    counts.update(users=len(uids), seen_users=len(uids) - n_unseen, unseen_users=n_unseen, pairs=len(pairs),
                  train_pairs=sum(x["split"] == "train" for x in pairs), queries=len(queries))
    return pairs, queries, counts


def _display_path(path) -> str:
    """``path`` relative to the data root (the repository or ``$PRC_ROOT``) when inside it, so manifests do
    not depend on the clone's location."""
    from ..core.config import data_root

    p, root = Path(path).resolve(), data_root()
    return str(p.relative_to(root)) if p.is_relative_to(root) else str(p)


def build(lamp_root, out_dir, generator=None, corpus: str = "lamp", paraphraser=None, **params) -> dict:
    """Build Pref-LaMP from a LaMP folder into ``out_dir`` (written atomically); return the manifest.

    ``corpus`` names what ``lamp_root`` holds ("lamp" downloaded, "synthetic" generated); it is
    recorded in the manifest so a smoke build can never pass for a real one. ``generator`` (the base
    policy, :func:`lib.decoding.greedy.policy_generator`) makes the rejected responses of ``rejected="policy"`` and, as
    ``paraphraser`` unless one is given, the LaMP-7 pair inputs: LaMP-7 needs it whatever ``rejected``
    is. ``rejected="other_rule"`` needs ``corpus="synthetic"`` (it reads ``facts.json``). A task with no
    user left raises ``ValueError`` (naming task and counts) and nothing is written: an existing
    ``out_dir`` is left as it was.
    """
    p = {**DEFAULTS, **params}
    check_values("preflamp.build", RULES, {k: v for k, v in p.items() if k in RULES})
    if not p["tasks"]:
        raise ValueError("tasks is empty: nothing to build (an empty Pref-LaMP is never written)")
    if p["rejected"] == "other_rule" and corpus != "synthetic":
        raise ValueError(f"rejected='other_rule' renders the same facts under another user's rule: it needs "
                         f"corpus='synthetic' (users with known rules and facts), got corpus={corpus!r}; "
                         "use rejected='policy' on real LaMP")
    if p["rejected"] == "policy" and generator is None:
        raise ValueError("rejected='policy' needs a generator (see lib.decoding.greedy.policy_generator)")
    paraphraser = paraphraser or generator
    if "LaMP-7" in p["tasks"] and paraphraser is None:
        raise ValueError("LaMP-7 is among the tasks: its pair inputs are paraphrases of the tweets by the base "
                         f"policy, so build() needs a generator (see lib.decoding.greedy.policy_generator) also when "
                         f"rejected={p['rejected']!r}")
    rules, facts = {}, {}
    rules_file = Path(lamp_root) / "rules.json"
    if corpus == "synthetic":
        if not rules_file.exists():
            raise FileNotFoundError(f"{rules_file} missing: a synthetic corpus must carry its users' rules")
        rules = json.loads(rules_file.read_text())["rules"]
        if p["rejected"] == "other_rule":
            from . import synthetic

            facts = synthetic.load_facts(lamp_root)
    manifest = {"corpus": corpus, "lamp_root": _display_path(lamp_root), "params": {**p, "tasks": list(p["tasks"])},
                "generator": getattr(generator, "description", None) if p["rejected"] == "policy" else None,
                "paraphraser": getattr(paraphraser, "description", None) if "LaMP-7" in p["tasks"] else None,
                "inputs": {}, "tasks": {}, "files": {}}
    with atomic_dir(out_dir) as tmp:
        for task in p["tasks"]:
            questions = lamp.load_task(lamp_root, task, p["split"])
            for kind in ("questions", "outputs"):
                f = lamp.file_path(lamp_root, task, p["split"], kind)
                manifest["inputs"][str(f.relative_to(lamp_root))] = sha256_file(f)
            task_rules = rules.get(f"{task}/{p['split']}", {})
            questions = [{**q, "rule": task_rules.get(q["id"])} for q in questions]
            task_facts = facts.get(f"{task}/{p['split']}", {}) if p["rejected"] == "other_rule" else None
            pairs, queries, counts = build_task(questions, task, generator, p, facts=task_facts,
                                                paraphraser=paraphraser)
            write_jsonl(tmp / task / "pairs.jsonl", pairs)
            write_jsonl(tmp / task / "queries.jsonl", queries)
            manifest["tasks"][task] = counts
            for name in ("pairs.jsonl", "queries.jsonl"):
                manifest["files"][f"{task}/{name}"] = sha256_file(tmp / task / name)
        if p["rejected"] == "other_rule":
            manifest["inputs"]["facts.json"] = sha256_file(Path(lamp_root) / "facts.json")
        write_json(tmp / "manifest.json", manifest)
    return manifest


def _load(root, name: str, task=None) -> list[dict]:
    root = Path(root)
    if not (root / "manifest.json").exists():
        raise FileNotFoundError(f"no Pref-LaMP build at {root}: run notebook 01 (`make data`)")
    tasks = [task] if task else sorted(d.name for d in root.iterdir() if d.is_dir())
    out = []
    for t in tasks:
        f = root / t / name
        if not f.exists():
            raise FileNotFoundError(f"{f} missing: task {t!r} was not built (tasks here: "
                                    f"{sorted(d.name for d in root.iterdir() if d.is_dir())})")
        out += read_jsonl(f)
    return out


def load_pairs(root, task: str | None = None) -> list[dict]:
    return _load(root, "pairs.jsonl", task)


def load_queries(root, task: str | None = None) -> list[dict]:
    return _load(root, "queries.jsonl", task)


def load_manifest(root) -> dict:
    """The manifest of a Pref-LaMP build (corpus, parameters, counts, sha256 of every file)."""
    return json.loads((Path(root) / "manifest.json").read_text())


def counts_table(manifest: dict):
    """The per-task counts of a build (its manifest's ``tasks``) as a DataFrame, one row per task."""
    import pandas as pd

    return pd.DataFrame(manifest["tasks"]).T.rename_axis("task").reset_index()
