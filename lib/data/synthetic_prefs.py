"""Synthetic multi-user preference sets in exactly the hub layouts that lib/data/prefdata.py reads.

The smoke profile has no access to the hub, so :func:`write_synthetic_prefsets` writes small stand-ins
for the three multi-user datasets, with users whose preferences are planted and known, and
:func:`pref_datasets` gives the matching ``prefdata.load`` keyword arguments. They never stand in for
the real data silently: the paper profile reads the hub (``path=None``), and every set comes with
``<name>.planted.json`` recording the seed and each user's planted rule.

Files under ``root`` (each dataset folder written atomically; pass the folder as ``path=``):

* ``tldr/comparisons/{train,validation}.jsonl``: ``openai/summarize_from_feedback`` config
  ``comparisons``: one record per (worker, comparison) ``{info: {id, post, title, subreddit, site,
  article}, summaries: [{text, policy, note}] * 2, choice, worker, batch, split, extra: {confidence}}``.
  The first 3/4 of the posts (in generation order) are ``split: "train"``, the rest ``"valid1"``
  (the hub's validation split).
* ``prism/utterances.jsonl``: ``HannahRoseKirk/prism-alignment`` config ``utterances``: one row per
  model response ``{utterance_id, interaction_id, conversation_id, user_id, turn, within_turn_id,
  conversation_type, user_prompt, model_response, model_name, model_provider, score, if_chosen,
  included_in_balanced_subset}``; as in PRISM the opening turn (``turn`` 0) shows 4 responses of 4
  models, later turns 2 responses of the model rated highest in the opening turn; ``score`` is 1-100.
* ``personalllm/data/train-00000-of-00001.parquet``: ``namkoong-lab/PersonalLLM``: one row per prompt
  ``{prompt, subset, prompt_id, response_<j>, response_<j>_model, response_<j>_<rm>}`` for j = 1..8 and
  5 synthetic reward models ``rm``, whose scores follow the planted rules of :data:`REWARD_MODELS`.
* ``<name>.planted.json`` beside each folder: seed, parameters, the rules and each user's rule.

Planted rules. Every response has three binary attributes (:data:`ATTRIBUTES`): ``long`` (17-25 words,
else 10-14), ``formal`` (sentence case with markers such as "Regarding", "I recommend",
"Furthermore", "the author"; else lower case with "ok so", "just", "lol", "tbh", "!!") and
``topic`` (names the prompt's topic keyword, :data:`KEYWORDS`, else a generic noun phrase). A user
has one rule of :data:`USER_TYPES`: short, long, formal, casual or topic (user ``u`` gets
``TYPE_ORDER[u % 5]``: with 12 users 3 short, 3 long, 2 formal, 2 casual, 2 topic), so several
users share a rule (a population model can learn it) and short/long and formal/casual users conflict
(personalisation matters; a population model is near chance on them). The two responses of a
TL;DR comparison have complementary attributes (``a`` and ``1 - a``), so every comparison is
informative for every rule; the user prefers the response that satisfies the rule, and with
probability ``noise`` (label noise, default 10%) the other one. PRISM: the opening turn's 4
responses have attributes ``a, 1-a, b, 1-b`` (``b`` another random vector), later turns ``a, 1-a``;
responses satisfying the user's rule get scores 55-100, the others 1-45 (all distinct within a turn),
and with probability ``noise`` a whole turn is flipped. PersonalLLM: each prompt has all 8 attribute
combinations (seeded order); reward model ``rm`` scores ``loc + scale * (sign * (2 a_f - 1) + N(0,
0.3))`` for its attribute ``f`` (:data:`REWARD_MODELS`; locations and scales differ as real reward
models do, the loader z-scores them); the loader's Dirichlet(0.1) users then mostly follow one or two
reward models, so their preferences conflict (long vs short, formal vs casual).

Texts come from 12 scenarios (:data:`SCENES`: a Reddit-style problem with its topic keyword, advice and
details); slots (age, duration, filler sentence) vary the posts. Posts / first prompts are about
30-60 words, responses 10-25 words. Everything is a pure function of the arguments: one
``random.Random(f"{name}-{seed}")`` per dataset, so the same arguments give the same bytes and a
dataset does not depend on which other names are written.
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

from ..core.io import atomic_dir, write_json
from .synthetic_scenes import CONVERSATION_TYPES, DURATIONS, FILLERS, FOLLOW_UPS, MODELS, SCENES

NAMES = ("tldr", "prism", "personalllm")
ATTRIBUTES = ("long", "formal", "topic")
USER_TYPES = {
    "short": ("long", -1, "prefers the shorter response (10-14 words over 17-25)"),
    "long": ("long", +1, "prefers the longer, more detailed response"),
    "formal": ("formal", +1, "prefers the formal register (sentence case, 'Regarding', 'Furthermore')"),
    "casual": ("formal", -1, "prefers the casual register (lower case, 'ok so', 'lol', 'tbh')"),
    "topic": ("topic", +1, "prefers the response that names the prompt's topic keyword"),
}
TYPE_ORDER = ("short", "long", "formal", "casual", "topic")
REWARD_MODELS = {  # name: (attribute, sign, loc, scale)
    "rm_long": ("long", +1, -2.0, 1.0),
    "rm_short": ("long", -1, 0.5, 2.5),
    "rm_formal": ("formal", +1, 3.0, 0.7),
    "rm_casual": ("formal", -1, 7.0, 4.0),
    "rm_topic": ("topic", +1, -5.0, 1.5),
}
RM_NOISE = 0.3
FORMAL_MARKERS = ("regarding", "recommend", "furthermore", "advisable", "author")
CASUAL_MARKERS = ("ok so", "just", "lol", "tbh", "idk", "!!")

# --------------------------------------------------------------------------------- texts
def _np(scene: dict, attrs: tuple) -> str:
    return scene["key_np"] if attrs[2] else scene["generic_np"]


def summary_text(scene: dict, attrs: tuple, k: int = 0) -> str:
    """A TL;DR summary of the scene with attributes ``(long, formal, topic)`` (``k`` picks the advice)."""
    long, formal, _ = attrs
    fact = scene["fact"].format(np=_np(scene, attrs))
    advice = scene["advice"][k % len(scene["advice"])]
    if formal:
        text = f"{fact[0].upper()}{fact[1:]}; the author requests advice."
        return text + (f" Furthermore, the author may {advice}." if long else "")
    text = f"{fact} lol what do i do"
    return (text + f", tbh i should {advice} idk!!" if long else text).lower()


def response_text(scene: dict, attrs: tuple, k: int = 0) -> str:
    """An assistant response to the scene's question with attributes ``(long, formal, topic)``."""
    long, formal, _ = attrs
    np_, advice = _np(scene, attrs), scene["advice"][k % len(scene["advice"])]
    detail = scene["detail"][k % len(scene["detail"])]
    if formal:
        text = f"Regarding {np_}, I recommend you {advice}."
        return text + (f" Furthermore, {detail}." if long else "")
    text = f"ok so {np_}? just {advice} lol"
    return (text + f". tbh also {detail}!!" if long else text).lower()


def _slots(rng: random.Random) -> dict:
    return {"age": rng.randint(19, 45), "g": rng.choice("FM"), "dur": rng.choice(DURATIONS)}


def _attrs(rng: random.Random) -> tuple:
    return tuple(rng.randint(0, 1) for _ in ATTRIBUTES)


def _flip(attrs: tuple) -> tuple:
    return tuple(1 - x for x in attrs)


def _satisfies(user_type: str, attrs: tuple) -> bool:
    attr, sign, _ = USER_TYPES[user_type]
    return bool(attrs[ATTRIBUTES.index(attr)]) == (sign > 0)


def user_types(n_users: int) -> list[str]:
    """The planted rule of each user: ``TYPE_ORDER[u % 5]``."""
    return [TYPE_ORDER[u % len(TYPE_ORDER)] for u in range(n_users)]


def _uid(rng: random.Random, n: int = 10) -> str:
    return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


# --------------------------------------------------------------------------------- datasets
def tldr_records(seed: int = 0, n_users: int = 12, pairs_per_user: int = 9, n_prompts: int = 36,
                 noise: float = 0.1) -> tuple[list[dict], dict]:
    """Comparison records (hub schema) and each worker's planted rule."""
    rng = random.Random(f"tldr-{seed}")
    if pairs_per_user > n_prompts:
        raise ValueError(f"pairs_per_user ({pairs_per_user}) > n_prompts ({n_prompts}): a worker labels a post once")
    posts = []
    for i in range(n_prompts):
        scene = SCENES[i % len(SCENES)]
        a = _attrs(rng)
        k = rng.randrange(3)
        post = f"{scene['situation'].format(**_slots(rng))} {rng.choice(FILLERS)} {scene['question']}"
        posts.append({"info": {"id": f"t3_{_uid(rng, 6).lower()}", "post": post, "title": scene["title"],
                               "subreddit": scene["subreddit"], "site": None, "article": None},
                      "attrs": (a, _flip(a)), "texts": (summary_text(scene, a, k), summary_text(scene, _flip(a), k)),
                      "policies": (f"synthetic_policy_{rng.randrange(4)}", f"synthetic_policy_{rng.randrange(4)}"),
                      "split": "train" if i < math.ceil(0.75 * n_prompts) else "valid1"})
    workers = [_uid(rng, 16) for _ in range(n_users)]
    types = user_types(n_users)
    rows = []
    for worker, typ in zip(workers, types):
        for i in sorted(rng.sample(range(n_prompts), pairs_per_user)):
            p = posts[i]
            good = 0 if _satisfies(typ, p["attrs"][0]) else 1
            choice = good if rng.random() >= noise else 1 - good
            rows.append({"info": p["info"],
                         "summaries": [{"text": t, "policy": pol, "note": None}
                                       for t, pol in zip(p["texts"], p["policies"])],
                         "choice": choice, "worker": worker, "batch": f"batch{3 + i % 3}", "split": p["split"],
                         "extra": {"confidence": rng.randint(5, 9)}})
    return rows, dict(zip(workers, types))


def prism_rows(seed: int = 0, n_users: int = 12, pairs_per_user: int = 9, noise: float = 0.1,
               turns_per_conversation: int = 3) -> tuple[list[dict], dict]:
    """Utterance rows (hub schema) and each user's planted rule; one max-vs-min pair per turn."""
    rng = random.Random(f"prism-{seed}")
    n_conv = math.ceil(pairs_per_user / turns_per_conversation)
    if n_conv > len(SCENES):
        raise ValueError(f"at most {len(SCENES) * turns_per_conversation} pairs per user")
    types = user_types(n_users)
    users = [f"user{rng.randrange(10000):04d}{u:02d}" for u in range(n_users)]
    rows, left = [], {u: pairs_per_user for u in users}
    for user, typ in zip(users, types):
        for scene_i in rng.sample(range(len(SCENES)), n_conv):
            scene = SCENES[scene_i]
            conv = f"c{rng.randrange(10**6):06d}"
            ctype = rng.choice(CONVERSATION_TYPES)
            models = rng.sample(MODELS, 4)
            best_model = None
            for turn in range(min(turns_per_conversation, left[user])):
                left[user] -= 1
                a = _attrs(rng)
                attrs = [a, _flip(a)]
                if turn == 0:
                    b = rng.choice([x for x in ((i >> 2 & 1, i >> 1 & 1, i & 1) for i in range(8))
                                    if x not in attrs])
                    attrs += [b, _flip(b)]
                order = rng.sample(range(len(attrs)), len(attrs))  # display order
                attrs = [attrs[i] for i in order]
                good = [_satisfies(typ, x) for x in attrs]
                if rng.random() < noise:
                    good = [not g for g in good]
                hi = iter(rng.sample(range(55, 101), len(attrs)))
                lo = iter(rng.sample(range(1, 46), len(attrs)))
                scores = [next(hi) if g else next(lo) for g in good]
                prompt = (f"{scene['situation'].format(**_slots(rng))} {scene['question']}" if turn == 0 else
                          f"{FOLLOW_UPS[(turn - 1) % len(FOLLOW_UPS)]} (About: {scene['title'].lower()}.)")
                top = max(range(len(attrs)), key=lambda j: scores[j])
                inter = f"int{rng.randrange(10**8):08d}"
                for j, x in enumerate(attrs):
                    model, provider = models[j] if turn == 0 else best_model
                    rows.append({"utterance_id": f"ut{rng.randrange(10**9):09d}", "interaction_id": inter,
                                 "conversation_id": conv, "user_id": user, "turn": turn, "within_turn_id": j,
                                 "conversation_type": ctype, "user_prompt": prompt,
                                 "model_response": response_text(scene, x, turn), "model_name": model,
                                 "model_provider": provider, "score": scores[j], "if_chosen": j == top,
                                 "included_in_balanced_subset": rng.random() < 0.5})
                if turn == 0:
                    best_model = models[top]
    return rows, dict(zip(users, types))


def personalllm_rows(seed: int = 0, n_prompts: int = 36) -> list[dict]:
    """Prompt rows (hub schema): 8 responses (all attribute combinations) scored by :data:`REWARD_MODELS`."""
    rng = random.Random(f"personalllm-{seed}")
    combos = [(i >> 2 & 1, i >> 1 & 1, i & 1) for i in range(8)]
    rows = []
    for i in range(n_prompts):
        scene = SCENES[i % len(SCENES)]
        k = rng.randrange(3)
        row = {"prompt": f"{scene['situation'].format(**_slots(rng))} {scene['question']}", "subset": "synthetic",
               "prompt_id": i}
        order = rng.sample(combos, 8)
        for j, a in enumerate(order, 1):
            row[f"response_{j}"] = response_text(scene, a, k)
        for j in range(1, 9):
            row[f"response_{j}_model"] = rng.choice(MODELS)[0]
        for j, a in enumerate(order, 1):
            for rm, (attr, sign, loc, scale) in REWARD_MODELS.items():
                x = sign * (2 * a[ATTRIBUTES.index(attr)] - 1)
                row[f"response_{j}_{rm}"] = round(loc + scale * (x + rng.gauss(0, RM_NOISE)), 6)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------- writing
def write_synthetic_prefsets(root, names=NAMES, seed: int = 0, n_users: int = 12, pairs_per_user: int = 9,
                             n_prompts: int = 36, noise: float = 0.1) -> dict[str, Path]:
    """Write the synthetic sets ``names`` under ``root``; returns ``{name: folder}`` (pass as ``path=``).

    ``n_users`` workers (TL;DR) / participants (PRISM) with ``pairs_per_user`` labelled comparisons /
    turns each; ``n_prompts`` TL;DR posts and PersonalLLM prompts (PersonalLLM users are simulated by the
    loader: see :func:`pref_datasets`); ``noise``: label-noise rate. Same arguments, same bytes.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(root)
    unknown = set(names) - set(NAMES)
    if unknown:
        raise KeyError(f"unknown synthetic preference set(s) {sorted(unknown)}; known: {list(NAMES)}")
    params = {"seed": seed, "n_users": n_users, "pairs_per_user": pairs_per_user, "n_prompts": n_prompts,
              "noise": noise}
    out = {}
    for name in names:
        planted = {"dataset": name, "generator": "lib/data/synthetic_prefs.py", **params, "attributes": list(ATTRIBUTES),
                   "user_types": {k: v[2] for k, v in USER_TYPES.items()}}
        with atomic_dir(root / name) as tmp:
            if name == "tldr":
                rows, users = tldr_records(seed, n_users, pairs_per_user, n_prompts, noise)
                for split, fname in (("train", "train"), ("valid1", "validation")):
                    _write_jsonl(tmp / "comparisons" / f"{fname}.jsonl", [r for r in rows if r["split"] == split])
                planted["users"] = users
            elif name == "prism":
                rows, users = prism_rows(seed, n_users, pairs_per_user, noise)
                _write_jsonl(tmp / "utterances.jsonl", rows)
                planted["users"] = users
            else:
                rows = personalllm_rows(seed, n_prompts)
                (tmp / "data").mkdir()
                pq.write_table(pa.Table.from_pylist(rows), tmp / "data" / "train-00000-of-00001.parquet")
                planted["reward_models"] = {rm: {"attribute": a, "sign": s, "loc": lo, "scale": sc}
                                            for rm, (a, s, lo, sc) in REWARD_MODELS.items()}
                planted["rm_noise"] = RM_NOISE
                planted["users"] = "simulated by lib.data.prefdata.load_personalllm (Dirichlet weights of the reward models)"
        write_json(root / f"{name}.planted.json", planted)
        out[name] = root / name
    return out


def pref_datasets(root, names=NAMES, n_users: int = 12, prompts_per_user: int = 10, alpha: float = 0.1) -> dict:
    """``prefdata.load`` keyword arguments for the sets written under ``root`` (notebook 02's ``pref_datasets``)."""
    root = Path(root)
    kw = {"tldr": {"path": str(root / "tldr")}, "prism": {"path": str(root / "prism"), "pairs": "maxmin"},
          "personalllm": {"path": str(root / "personalllm"), "n_users": n_users,
                          "prompts_per_user": prompts_per_user, "alpha": alpha}}
    return {n: kw[n] for n in names}
