"""In-context personalisation: k of the user's own past (source, output) examples in the prompt.

Follows the retrieval-augmented prompts of LaMP (Salemi et al. 2023, "LaMP: When Large Language
Models Meet Personalization", Sec. 4 and the per-task prompt table): retrieve k profile items
with BM25 (Robertson & Zaragoza 2009; the ``bm25s`` implementation), recency or random, render
each with the task's template, join them with ", and " and put the query (the LaMP input, with its
instruction) last. The paper under study reports that this kind of ICL beats every reward-guided
method at >= 3B.

Prompts are LaMP's own, character for character: ``create_generation_news_prompt``,
``create_generation_paper_prompt`` and ``create_parphrase_tweet_prompt`` of the reference code
(github.com/LaMP-Benchmark/LaMP, ``LaMP/prompts/prompts.py``, commit de78cdb), trailing spaces
included (:data:`TEMPLATES`)::

    LaMP-4  "{title}" is the title for "{text}" , and ... . {input}
    LaMP-5  "{title}" is a title for "{abstract}" , and ... . Following the given patterns {input}
    LaMP-7  "{tweet}" , and ...  are written by a person. Following the given patterns {input}

BM25 is queried, as in LaMP (``*_query_corpus_maker``), with the input *without its instruction*
(the text after "article:", "paper:", or the first ":" for LaMP-7; :func:`retrieval_query`), over
documents ``"{output} {source}"`` (LaMP-4/5: title and text/abstract) or the tweet alone (LaMP-7).
LaMP's BM25 is ``rank_bm25.BM25Okapi`` on whitespace tokens; ours is ``bm25s`` with its own
tokenizer (lower-cased words), a documented difference.

Our documented choices (the paper's exact prompt is not public):

* The whole user message goes through :func:`lib.core.models.prompt_text` (the policy's chat
  template where it has one), exactly like the base policy and RGD prompts.
* Token budget ``max_tokens`` on the final prompt text. Like LaMP, each example's *source* is
  truncated to an equal share of the budget; when even the outputs do not fit, the least
  relevant examples are dropped. The query is never truncated: if it alone exceeds the budget a
  warning is issued and the zero-shot prompt is returned.
* Recency: items sorted by ``date`` when every item has one, else the profile order is taken as
  chronological (most recent last).
* An empty profile (k > 0) gives the zero-shot prompt with a warning.
* An input without the task's keyword is used whole as the retrieval query (LaMP would fail).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..core import models
from ..core.io import sha256_text

RETRIEVERS = ("bm25", "recency", "random")


@dataclass(frozen=True)
class Template:
    item: str  # format with {output} and {source}
    wrap: str  # format with {examples} and {query}
    query_after: str  # the retrieval query is the input after this keyword (LaMP's extract_after_*)
    doc: str  # format with {output} and {source}: the text BM25 indexes for a profile item
    join: str = ", and "


# LaMP-Benchmark/LaMP, LaMP/prompts/prompts.py (commit de78cdb): create_generation_news_prompt,
# create_generation_paper_prompt, create_parphrase_tweet_prompt and the *_query_corpus_maker functions
# with LaMP/prompts/utils.py extract_after_article / extract_after_paper / extract_after_colon.
TEMPLATES = {
    "LaMP-4": Template('"{output}" is the title for "{source}" ', "{examples}. {query}", "article:", "{output} {source}"),
    "LaMP-5": Template('"{output}" is a title for "{source}" ', "{examples}. Following the given patterns {query}",
                       "paper:", "{output} {source}"),
    "LaMP-7": Template('"{output}" ', "{examples} are written by a person. Following the given patterns {query}",
                       ":", "{output}"),
}


@dataclass
class ICLPrompt:
    message: str  # the user message (examples + query)
    text: str  # what the policy sees (chat template applied)
    n_examples: int
    example_ids: list[str] = field(default_factory=list)
    warning: str | None = None


def template(task: str) -> Template:
    if task not in TEMPLATES:
        raise KeyError(f"icl: no template for task {task!r}; known: {sorted(TEMPLATES)}")
    return TEMPLATES[task]


def _check_query(q: dict) -> None:
    for f in ("query_id", "prompt", "profile"):
        if f not in q:
            raise KeyError(f"icl: query {q.get('query_id', '?')!r} has no field {f!r}")
    for i, it in enumerate(q["profile"]):
        if "output" not in it or "id" not in it:
            raise KeyError(f"icl: query {q['query_id']!r}: profile item {i} needs 'id' and 'output'")


def retrieval_query(task: str, prompt: str) -> str:
    """The LaMP input without its instruction: the text after the task's keyword ("article:",
    "paper:", the first ":" for LaMP-7), stripped, as LaMP queries its retriever; the whole input if
    the keyword is absent."""
    key = template(task).query_after
    i = prompt.find(key)
    return prompt if i < 0 else prompt[i + len(key):].strip()


def retrieve(query: dict, k: int, method: str = "bm25", seed: int = 0, task: str | None = None) -> list[dict]:
    """The ``k`` profile items of ``query`` most relevant first (deterministic for a seed)."""
    _check_query(query)
    prof = list(query["profile"])
    if k <= 0 or not prof:
        return []
    if method == "bm25":
        import logging

        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG
        t = template(task or query.get("task"))
        docs = bm25s.tokenize([t.doc.format(output=it["output"], source=it.get("source", "")) for it in prof],
                              return_ids=False, show_progress=False)
        qtext = retrieval_query(task or query.get("task"), query["prompt"])
        qt = bm25s.tokenize([qtext], return_ids=False, show_progress=False)[0]
        if any(docs) and qt:
            r = bm25s.BM25()
            r.index(docs, show_progress=False)
            scores = np.asarray(r.get_scores(qt), dtype=float)
        else:  # nothing to match on: every item scores 0 and the stable sort keeps profile order
            scores = np.zeros(len(prof))
        order = np.argsort(-scores, kind="stable")
    elif method == "recency":
        if all(it.get("date") for it in prof):
            order = sorted(range(len(prof)), key=lambda i: (str(prof[i]["date"]), i), reverse=True)
        else:
            order = list(range(len(prof)))[::-1]
    elif method == "random":
        rng = np.random.default_rng([seed, int(sha256_text(str(query["query_id"]))[:8], 16)])
        order = rng.permutation(len(prof))
    else:
        raise ValueError(f"icl: unknown retriever {method!r}; choose one of {RETRIEVERS}")
    return [prof[i] for i in list(order)[:k]]


def render(task: str, examples: list[dict], query: str) -> str:
    """The user message: templated examples joined LaMP-style, then the query (zero-shot if none).

    Exactly LaMP's strings (see :data:`TEMPLATES`): e.g. LaMP-4 with two examples gives
    ``'"T1" is the title for "a1" , and "T2" is the title for "a2" . <input>'``.
    """
    if not examples:
        return query
    t = template(task)
    body = t.join.join(t.item.format(output=e["output"].strip(), source=e.get("source", "").strip())
                       for e in examples)
    return t.wrap.format(examples=body, query=query)


def _ntok(tok, text: str) -> int:
    return len(tok(text, add_special_tokens=False)["input_ids"])


def _truncate(tok, text: str, n: int) -> str:
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= n else tok.decode(ids[: max(n, 0)], skip_special_tokens=True)


def build_prompt(query: dict, tok, k: int, retriever: str = "bm25", max_tokens: int = 512,
                 seed: int = 0, task: str | None = None) -> ICLPrompt:
    """ICL prompt for one query: at most ``k`` examples within ``max_tokens``; the query is kept whole."""
    task = task or query.get("task")
    template(task)
    zero = render(task, [], query["prompt"])
    zero_text = models.prompt_text(tok, zero)
    if _ntok(tok, zero_text) > max_tokens:
        msg = (f"icl: query {query.get('query_id')!r} alone is {_ntok(tok, zero_text)} tokens > budget "
               f"{max_tokens}; using the zero-shot prompt (the query is never truncated)")
        warnings.warn(msg, stacklevel=2)
        return ICLPrompt(zero, zero_text, 0, [], msg)
    items = retrieve(query, k, retriever, seed, task=task)
    if k > 0 and not query["profile"]:
        msg = f"icl: user {query.get('user')!r} query {query.get('query_id')!r} has an empty profile: zero-shot"
        warnings.warn(msg, stacklevel=2)
        return ICLPrompt(zero, zero_text, 0, [], msg)

    def full(ex, per):
        ex = [{**e, "source": _truncate(tok, e.get("source", ""), per)} for e in ex]
        m = render(task, ex, query["prompt"])
        return m, models.prompt_text(tok, m)

    for n in range(len(items), 0, -1):  # drop the least relevant example until the outputs fit
        ex = items[:n]
        if _ntok(tok, full(ex, 0)[1]) > max_tokens:
            continue
        per = (max_tokens - _ntok(tok, full(ex, 0)[1])) // n
        while True:
            m, text = full(ex, per)
            over = _ntok(tok, text) - max_tokens
            if over <= 0:
                return ICLPrompt(m, text, n, [str(e["id"]) for e in ex])
            per = max(0, per - math.ceil(over / n))
    return ICLPrompt(zero, zero_text, 0, [], None)
