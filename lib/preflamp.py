"""Pref-LaMP: preference pairs built from LaMP, with each user's real output as ground truth.

:func:`build` is a pure function of (LaMP data, rejected-response generator, parameters, seed).

Per user (a user is a LaMP profile: real LaMP gives every question its own profile, the synthetic
corpus gives several questions one profile, and questions are grouped by their profile's ids):

* **pairs** from the profile: prompt = the task's LaMP instruction applied to the profile item's
  source (article, abstract; for LaMP-7, whose profile holds only the user's tweets, a normalised
  version of the tweet, see :func:`lamp7_source`), chosen = the user's own output, rejected = a
  non-personalised output for the same prompt: by default the base policy's zero-shot greedy
  generation (``rejected="policy"``), or another user's output for the most similar source
  (``rejected="other_user"``, BM25). Pairs whose rejected equals the chosen are dropped (counted).
* **queries**: the user's held-out LaMP questions, with the user's real output as the reference and
  the profile for ICL.
* users are split into *seen* (their train pairs train reward models) and *unseen* (only a few-shot
  adaptation); each user's pairs are split into train/test.

Rejected generations are cached per prompt in a JSONL file that grows batch by batch, so an
interrupted build resumes where it stopped; the output folder itself is written atomically.
"""
from __future__ import annotations

import json
import random
import re
import warnings
from pathlib import Path
from typing import Callable

from . import lamp
from .io import atomic_dir, read_jsonl, sha256_file, sha256_text, write_json, write_jsonl

DEFAULTS = dict(tasks=("LaMP-4", "LaMP-5", "LaMP-7"), split="dev", max_users=None, max_pairs_per_user=12,
                min_profile=4, unseen_frac=0.25, test_frac=0.25, rejected="policy", max_source_chars=1200,
                seed=0)


def lamp7_source(tweet: str) -> str:
    """A neutral stand-in for the unknown source of a LaMP-7 profile tweet.

    Documented choice: LaMP-7 profiles hold only the user's own tweets, so the paraphrase input of a
    profile pair is the tweet with its personal surface style removed: hashtags, @mentions and URLs
    dropped, trailing !/? turned into a full stop, case normalised to sentence case.
    """
    t = re.sub(r"(https?://\S+|[@#]\w+)", "", tweet)
    t = re.sub(r"[!?]+\s*$", ".", t.strip())
    t = re.sub(r"\s+", " ", t).strip()
    return t[:1].upper() + t[1:].lower() if t else t


def clean_generation(text: str) -> str:
    """First non-empty line, without surrounding quotes or a 'Title:'/'Headline:' label."""
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    t = lines[0] if lines else ""
    t = re.sub(r"^(\*\*)?(title|headline|paraphrase|tweet)\s*:\s*(\*\*)?\s*", "", t, flags=re.I)
    return t.strip().strip('"').strip("*").strip()


def profile_item(task: str, item: dict, max_chars: int) -> dict:
    spec = lamp.task_spec(task)
    out = item[spec.output_field].strip()
    src = item[spec.source_field] if spec.source_field else lamp7_source(out)
    return {"id": item["id"], "source": src.strip()[:max_chars], "output": out}


def group_users(questions: list[dict]) -> dict[str, list[dict]]:
    """user id -> questions; a user is a profile (the first question's id names it)."""
    by_profile: dict[tuple, list[dict]] = {}
    for q in questions:
        by_profile.setdefault(tuple(p["id"] for p in q["profile"]), []).append(q)
    return {qs[0]["id"]: qs for qs in by_profile.values()}


class GenerationCache:
    """prompt -> generation, appended to a JSONL file batch by batch (resumable)."""

    def __init__(self, path: Path, key: str):
        self.path, self.key, self.data = Path(path), key, {}
        if self.path.exists():
            for i, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
                try:
                    rec = json.loads(line)
                    self.data[rec["k"]] = rec["g"]
                except (json.JSONDecodeError, KeyError):
                    warnings.warn(f"{self.path}: line {i} unreadable (an interrupted write?); it will be regenerated")

    def _k(self, prompt: str) -> str:
        return sha256_text(self.key + "\x1f" + prompt)[:32]

    def get(self, prompt):
        return self.data.get(self._k(prompt))

    def add(self, prompts, gens):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for p, g in zip(prompts, gens):
                self.data[self._k(p)] = g
                f.write(json.dumps({"k": self._k(p), "g": g}) + "\n")
            f.flush()


def cached_generator(generate_batch: Callable[[list[str]], list[str]], cache_path: str | Path | None, key: str,
                     batch_size: int = 16, desc: str = "rejected") -> Callable[[list[str]], list[str]]:
    """Wrap a batch generator with a per-prompt cache that grows batch by batch (resumable).

    Batches are fixed slices of the sorted unique prompts, so a resumed run batches exactly as a
    fresh one and produces the same outputs; a batch whose prompts are all cached is skipped.
    """
    from tqdm.auto import tqdm

    cache = GenerationCache(cache_path, key) if cache_path else None

    def gen(prompts: list[str]) -> list[str]:
        out = {}
        uniq = sorted(set(prompts), key=lambda p: (len(p), p))
        batches = [uniq[i : i + batch_size] for i in range(0, len(uniq), batch_size)]
        for b in tqdm(batches, desc=desc):
            cached = [cache.get(p) if cache else None for p in b]
            if all(c is not None for c in cached):
                out.update(zip(b, cached))
                continue
            g = [clean_generation(t) for t in generate_batch(b)]
            if len(g) != len(b):
                raise RuntimeError(f"generator returned {len(g)} outputs for {len(b)} prompts")
            if cache:
                cache.add(b, g)
            out.update(zip(b, g))
        return [out[p] for p in prompts]

    return gen


def policy_generator(model_name: str = "smollm2-135m", max_new_tokens: int = 24, batch_size: int = 16,
                     cache_path: str | Path | None = None, device=None) -> Callable[[list[str]], list[str]]:
    """A rejected-response generator: the base policy's zero-shot greedy output, cached and resumable.

    The model is loaded only if some batch is not cached yet.
    """
    from . import models

    state = {}

    def batch(prompts):
        if "model" not in state:
            state["model"], state["tok"] = models.load_causal_lm(model_name, device=device)
        return models.greedy_generate(state["model"], state["tok"], prompts, max_new_tokens, batch_size=len(prompts))

    gen = cached_generator(batch, cache_path, f"{model_name}|{max_new_tokens}|greedy", batch_size,
                           desc=f"rejected[{model_name}]")
    gen.description = f"{model_name} zero-shot greedy, max_new_tokens={max_new_tokens}"
    return gen


def _other_user_rejected(items_by_user: dict[str, list[dict]], seed: int) -> dict[tuple, str]:
    """(user, item id) -> the output of another user's profile item with the most similar source (BM25)."""
    import bm25s

    corpus = [(u, it) for u, items in items_by_user.items() for it in items]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([it["source"] for _, it in corpus], show_progress=False), show_progress=False)
    k = min(len(corpus), 20)
    res, _ = retriever.retrieve(bm25s.tokenize([it["source"] for _, it in corpus], show_progress=False), k=k,
                                show_progress=False)
    out = {}
    for i, (u, it) in enumerate(corpus):
        other = next((corpus[j][1]["output"] for j in res[i] if corpus[j][0] != u), None)
        if other is None:
            raise ValueError("rejected='other_user' needs at least two users with profiles")
        out[(u, it["id"])] = other
    return out


def build_task(questions: list[dict], task: str, generator, params: dict) -> tuple[list[dict], list[dict], dict]:
    """Pairs, queries and counts of one task (pure: no file I/O beyond the generator's cache)."""
    p = {**DEFAULTS, **params}
    rng = random.Random(f"{task}-{p['seed']}")
    users = group_users(questions)
    counts = {"users_in_lamp": len(users), "users_skipped_small_profile": 0, "pairs_dropped_identical": 0}
    uids = sorted(users)
    small = [u for u in uids if len(users[u][0]["profile"]) < p["min_profile"]]
    if small:
        warnings.warn(f"{task}: {len(small)} users have fewer than min_profile={p['min_profile']} profile items "
                      "and are skipped (documented: too few pairs to train or adapt on)")
        counts["users_skipped_small_profile"] = len(small)
    uids = [u for u in uids if u not in small]
    rng.shuffle(uids)
    if p["max_users"]:
        uids = uids[: p["max_users"]]
    n_unseen = round(len(uids) * p["unseen_frac"])
    group = {u: ("unseen" if i < n_unseen else "seen") for i, u in enumerate(uids)}
    spec = lamp.task_spec(task)
    items = {}
    for u in sorted(uids):
        prof = [profile_item(task, it, p["max_source_chars"]) for it in users[u][0]["profile"]]
        prof = [it for it in prof if it["output"] and it["source"]]
        items[u] = sorted(prof, key=lambda it: it["id"])
    chosen_items = {u: random.Random(f"{task}-{u}-{p['seed']}").sample(items[u], min(len(items[u]), p["max_pairs_per_user"]))
                    for u in sorted(uids)}
    prompts = {(u, it["id"]): spec.instruction + it["source"] for u in chosen_items for it in chosen_items[u]}
    if p["rejected"] == "policy":
        keys = sorted(prompts)
        gens = generator([prompts[k] for k in keys])
        rejected = dict(zip(keys, gens))
    elif p["rejected"] == "other_user":
        rejected = _other_user_rejected(items, p["seed"])
    else:
        raise ValueError(f"rejected must be 'policy' or 'other_user', got {p['rejected']!r}")
    pairs, queries = [], []
    for u in sorted(uids):
        sel = chosen_items[u]
        n_test = max(1, round(len(sel) * p["test_frac"]))
        for j, it in enumerate(sel):
            rej = rejected[(u, it["id"])]
            if rej.strip() == it["output"].strip() or not rej.strip():
                counts["pairs_dropped_identical"] += 1
                continue
            pairs.append({"pair_id": f"{task}/{u}/{it['id']}", "task": task, "user": u, "user_group": group[u],
                          "split": "test" if j < n_test else "train", "prompt": prompts[(u, it["id"])],
                          "chosen": it["output"], "rejected": rej, "source_id": it["id"]})
        for q in users[u]:
            queries.append({"query_id": f"{task}/{q['id']}", "task": task, "user": u, "user_group": group[u],
                            "prompt": q["input"], "reference": q["output"], "profile": items[u],
                            "rule": q.get("rule")})
    counts.update(users=len(uids), seen_users=len(uids) - n_unseen, unseen_users=n_unseen, pairs=len(pairs),
                  train_pairs=sum(x["split"] == "train" for x in pairs), queries=len(queries))
    return pairs, queries, counts


def _display_path(path) -> str:
    """``path`` relative to the data root (the repository or ``$PRC_ROOT``) when inside it, so manifests do
    not depend on the clone's location."""
    from .config import data_root

    p, root = Path(path).resolve(), data_root()
    return str(p.relative_to(root)) if p.is_relative_to(root) else str(p)


def build(lamp_root, out_dir, generator=None, corpus: str = "lamp", **params) -> dict:
    """Build Pref-LaMP from a LaMP folder into ``out_dir`` (written atomically); return the manifest.

    ``corpus`` names what ``lamp_root`` holds ("lamp" downloaded, "synthetic" generated); it is
    recorded in the manifest so a smoke build can never pass for a real one.
    """
    p = {**DEFAULTS, **params}
    rules = {}
    rules_file = Path(lamp_root) / "rules.json"
    if corpus == "synthetic":
        if not rules_file.exists():
            raise FileNotFoundError(f"{rules_file} missing: a synthetic corpus must carry its users' rules")
        rules = json.loads(rules_file.read_text())["rules"]
    if p["rejected"] == "policy" and generator is None:
        raise ValueError("rejected='policy' needs a generator (see policy_generator)")
    manifest = {"corpus": corpus, "lamp_root": _display_path(lamp_root), "params": {**p, "tasks": list(p["tasks"])},
                "generator": getattr(generator, "description", None) if p["rejected"] == "policy" else None,
                "inputs": {}, "tasks": {}, "files": {}}
    with atomic_dir(out_dir) as tmp:
        for task in p["tasks"]:
            questions = lamp.load_task(lamp_root, task, p["split"])
            for kind in ("questions", "outputs"):
                f = lamp.file_path(lamp_root, task, p["split"], kind)
                manifest["inputs"][str(f.relative_to(lamp_root))] = sha256_file(f)
            task_rules = rules.get(f"{task}/{p['split']}", {})
            questions = [{**q, "rule": task_rules.get(q["id"])} for q in questions]
            pairs, queries, counts = build_task(questions, task, generator, p)
            write_jsonl(tmp / task / "pairs.jsonl", pairs)
            write_jsonl(tmp / task / "queries.jsonl", queries)
            manifest["tasks"][task] = counts
            for name in ("pairs.jsonl", "queries.jsonl"):
                manifest["files"][f"{task}/{name}"] = sha256_file(tmp / task / name)
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
    return json.loads((Path(root) / "manifest.json").read_text())
