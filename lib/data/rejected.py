"""Pref-LaMP's non-policy rejected responses: another user's output for the most similar source
(``rejected="other_user"``) and the same facts under another user's rule (``rejected="other_rule"``); and the test
of a policy-made rejected response that is machine junk (:func:`degenerate_reason`)."""
from __future__ import annotations

import random
import re

import numpy as np

from .lamp import norm_text

# A small policy's zero-shot output that no user would write: a pair against it tests "is this junk", not "whose is it"
TEMPLATE_PREFIX = re.compile(r"^\W*(the\s+)?(article|headline|title|abstract|tweet|paraphrase|summary|answer|output|"
                             r"text)\s*:", re.I)
DEGENERATE = ("empty", "repetition", "template_prefix")


def degenerate_reason(text: str) -> str:
    """Why a generated rejected response is degenerate ("" when it is not): ``empty`` (no word), ``repetition``
    (a word n-gram, n = 1..3, repeated three times in a row, e.g. "The TSA's TSA's TSA's", or fewer than half of its
    bigrams distinct over 6+ words) or ``template_prefix`` (it opens with a label such as "The article:")."""
    words = re.findall(r"[\w']+", (text or "").lower())
    if not words:
        return "empty"
    for n in (1, 2, 3):
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        if any(grams[i] == grams[i + n] == grams[i + 2 * n] for i in range(len(grams) - 2 * n)):
            return "repetition"
    bigrams = list(zip(words, words[1:]))
    if len(words) >= 6 and len(set(bigrams)) < 0.5 * len(bigrams):
        return "repetition"
    return "template_prefix" if TEMPLATE_PREFIX.match(text) else ""


FALLBACK_CELLS = 4_000_000  # ranks one fallback retrieval may hold (queries x k): tens of MB, whatever the corpus


def other_user_rejected(items_by_user: dict[str, list[dict]], task: str) -> dict[tuple, str | None]:
    """(user, item id) -> the output of the best-ranked (BM25 on the sources) profile item of another user
    whose output differs from this item's (:func:`lib.data.lamp.norm_text`); None if no other user's output differs.

    Each item is ranked against the whole corpus's top 20 first; the few whose top 20 hold nothing usable are
    ranked against every other user's items, in chunks of at most :data:`FALLBACK_CELLS` ranks (one user with
    20,000 profile items used to need 9 GB here). Other users' items that score 0 for a query tie with this
    user's masked ones, so among those the order is bm25s'."""
    import bm25s

    if sum(bool(items) for items in items_by_user.values()) < 2:
        raise ValueError(f"{task}: rejected='other_user' needs at least two users with profile items, got "
                         f"{sum(bool(items) for items in items_by_user.values())}")
    corpus = [(u, it) for u, items in items_by_user.items() for it in items]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([it["source"] for _, it in corpus], show_progress=False), show_progress=False)

    def ranked(idx: list[int], k: int, mask=None):
        q = bm25s.tokenize([corpus[i][1]["source"] for i in idx], show_progress=False)
        return retriever.retrieve(q, k=k, show_progress=False, weight_mask=mask)[0]

    def pick(i: int, ranking) -> str | None:
        u, own = corpus[i][0], norm_text(corpus[i][1]["output"])
        return next((corpus[j][1]["output"] for j in ranking
                     if corpus[j][0] != u and norm_text(corpus[j][1]["output"]) != own), None)

    everyone = list(range(len(corpus)))
    out = {i: pick(i, r) for i, r in zip(everyone, ranked(everyone, min(len(corpus), 20)))}
    missing = [i for i in everyone if out[i] is None]
    if missing and len(corpus) > 20:  # nothing usable in the top 20: rank every other user's item
        owner = np.array([u for u, _ in corpus])
        for u in sorted({corpus[i][0] for i in missing}):
            mask = (owner != u).astype(np.float32)  # this user's own items score 0: never picked anyway
            mine, k = [i for i in missing if corpus[i][0] == u], int(mask.sum())
            step = max(1, FALLBACK_CELLS // k)  # queries x k ranks per call, so memory stays bounded
            for s in range(0, len(mine), step):
                chunk = mine[s : s + step]
                out.update({i: pick(i, r) for i, r in zip(chunk, ranked(chunk, k, mask))})
    return {(corpus[i][0], corpus[i][1]["id"]): o for i, o in out.items()}


def other_rule_rejected(chosen_items: dict[str, list[dict]], rule_of_user: dict[str, str], facts: dict,
                         task: str, seed: int) -> dict[tuple, str | None]:
    """(user, item id) -> the item's facts rendered under another user's rule (None: no such rendering).

    The other user is a seeded choice (per task, user, item and seed) among the users whose rule
    renders these facts differently from the chosen output and not in a way that follows this user's
    own rule; if none qualifies, among those whose rendering merely differs from the chosen.
    """
    from . import synthetic

    out = {}
    users = sorted(rule_of_user)
    for u, items in chosen_items.items():
        own = rule_of_user[u]
        if not own:
            raise ValueError(f"rejected='other_rule': user {u!r} of {task} has no rule (not a synthetic corpus?)")
        for it in items:
            if it["id"] not in facts:
                raise ValueError(f"rejected='other_rule': no facts for profile item {it['id']!r} of {task} in "
                                 "facts.json: regenerate the synthetic corpus")
            f = facts[it["id"]]
            cands = [(v, synthetic.apply_rule(rule_of_user[v], f)) for v in users if v != u and rule_of_user[v] != own]
            cands = [(v, r) for v, r in cands if norm_text(r) != norm_text(it["output"])]
            strict = [(v, r) for v, r in cands if not synthetic.follows_rule(own, r)]
            pool = strict or cands
            rng = random.Random(f"{task}-{u}-{it['id']}-{seed}")
            out[(u, it["id"])] = rng.choice(pool)[1] if pool else None
    return out


def kept_pairs(chosen_items: dict, rejected: dict, counts: dict, degenerate: str | None = None) -> dict[str, list[tuple]]:
    """user -> [(item, rejected)] without the pairs whose rejected is empty or equals the chosen (counted). With
    ``degenerate`` ("keep" or "drop": ``rejected="policy"`` builds) each degenerate rejected response
    (:func:`lib.data.rejected.degenerate_reason`) is counted by reason, and dropped with "drop"."""
    kept = {}
    for u in sorted(chosen_items):
        kept[u] = []
        for it in chosen_items[u]:
            rej = rejected[(u, it["id"])]
            if not rej or not rej.strip() or norm_text(rej) == norm_text(it["output"]):
                counts["pairs_dropped_identical"] += 1
                continue
            why = degenerate_reason(rej) if degenerate else ""
            if why:
                counts[f"rejected_degenerate_{why}"] += 1
                if degenerate == "drop":
                    counts["pairs_dropped_degenerate"] += 1
                    continue
            kept[u].append((it, rej))
    return kept
