"""Multi-user preference datasets mapped to the Pref-LaMP pair schema.

Every loader returns records ``{pair_id, task, user, user_group, split, prompt, chosen, rejected}``
with a seeded split of users into seen / unseen (``unseen_frac``) and of each user's pairs into
train / test (``test_frac``), exactly like lib/data/preflamp.py. The datasets' own train/validation
splits are pooled: the user split is ours.

* ``tldr``: Reddit TL;DR comparisons (Stiennon et al. 2020; hub ``openai/summarize_from_feedback``,
  config ``comparisons``): one record per comparison, user = the labelling ``worker``, chosen =
  ``summaries[choice]``; prompt in the paper's format ``SUBREDDIT/TITLE/POST ... TL;DR:``.
* ``prism``: PRISM (Kirk et al. 2024; hub ``HannahRoseKirk/prism-alignment``, config
  ``utterances``): user = ``user_id``; the responses of one turn (same ``conversation_id`` and
  ``turn``) were rated 1-100 by that user: chosen = highest score, rejected = lowest (``pairs="maxmin"``)
  or every pair of different scores (``pairs="all"``). The prompt is the turn's ``user_prompt``
  (earlier turns are not included: a documented simplification).
* ``personalllm``: PersonalLLM (Zollo et al. 2025; hub ``namkoong-lab/PersonalLLM``): prompts with 8
  responses scored by 10 reward models (columns ``response_<j>_<rm>``; ``response_<j>_model``, the LLM
  that wrote response j, is not a reward model and is skipped). A simulated user is a
  Dirichlet(``alpha``) weighting of the reward models (alpha = 0.1 as in LoRe); scores are z-scored per
  reward model first so no model dominates by scale. Each user labels ``prompts_per_user`` random
  prompts, comparing two random responses (chosen = higher weighted score; exact ties skipped).

Source: the hub through ``datasets.load_dataset`` (paper profile), or ``path=`` local files in the
hub schema (json / jsonl / parquet; a file or a folder of them), as the tests do. A malformed record
raises ``ValueError`` naming the file, record index and field.

Records that are legitimate in a real release but give no pair are skipped and counted by cause (:data:`DROP_CAUSES`):
a TL;DR comparison with an empty or missing summary text (12 of 437 CNN/DM comparisons of the hub release),
identical chosen and rejected texts, a PRISM turn with a single rated response or only tied scores, a
PersonalLLM comparison the simulated user scores as a tie, and the users left with fewer than ``min_pairs``
pairs (and their pairs). Each load warns once with the counts and, given ``drops={}``, fills that dict
(cause -> count) for the dataset's manifest. When more than :data:`MAX_BAD_FRACTION` of the records are
skipped as bad (empty summaries), the file as a whole is wrong: ``ValueError`` with the counts.
"""
from __future__ import annotations

import random
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..core.params import check_values, count, fraction, number

HUB = {"tldr": ("openai/summarize_from_feedback", "comparisons"),
       "prism": ("HannahRoseKirk/prism-alignment", "utterances"),
       "personalllm": ("namkoong-lab/PersonalLLM", None)}
SUFFIXES = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}
NON_REWARD_SUFFIXES = ("model",)  # PersonalLLM's response_<j>_model names the LLM that wrote response j
DROP_CAUSES = {
    "empty_summary": "TL;DR comparisons with an empty or missing summary text",
    "identical_texts": "comparisons whose two texts are identical",
    "single_response_turn": "PRISM turns with fewer than two rated responses",
    "tied_scores": "comparisons whose scores tie (PRISM turns, PersonalLLM pairs)",
    "labels_as_strings": "records whose number fields (choice, turn, score) are strings, read as numbers",
    "score_out_of_range": "PRISM ratings outside 1-100",
    "users_below_min_pairs": "users with fewer than min_pairs pairs",
    "pairs_of_users_below_min_pairs": "pairs of those users",
}
MAX_BAD_FRACTION = 0.5  # more records skipped as bad than this: the file is wrong, not a real file with odd records


# --------------------------------------------------------------------------------- reading
def _files(path) -> list[Path]:
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES) if path.is_dir() else [path]
    if not files or not all(p.exists() for p in files):
        raise FileNotFoundError(f"no json/jsonl/parquet files at {path}")
    return files


def check_local_file(f) -> list[dict] | None:
    """Check a local json / jsonl / parquet file, so that a bad one fails with :class:`lib.core.io.BadFileError`
    (a ``ValueError``) naming the file and what is wrong: empty, not UTF-8 (UTF-16 / UTF-32), an HTML page,
    compressed, invalid JSON (line, and column for ``.json``), truncated, not a list of records, or not a valid
    parquet file. Returns the records of a JSON file as written (``datasets`` would turn a column that mixes
    ``1`` and ``"1"`` into one type without a word; the loaders count such labels); None for parquet, which
    ``datasets`` reads."""
    from ..core.io import BadFileError, check_json, decode_text, parse_jsonl

    f = Path(f)
    raw = f.read_bytes() if f.suffix != ".parquet" else None
    if f.suffix == ".parquet":
        size = f.stat().st_size
        with open(f, "rb") as fh:
            head = fh.read(4)
            fh.seek(max(size - 4, 0))
            tail = fh.read(4)
        why = "empty file" if size == 0 else None
        if why is None and head != b"PAR1":
            why = "it does not start with the parquet magic bytes PAR1"
        if why is None and (size < 12 or tail != b"PAR1"):
            why = "it does not end with the parquet footer (truncated?)"
        if why is None:
            import pyarrow.parquet as pq

            try:
                pq.ParquetFile(f).metadata  # noqa: B018 - reading the footer is the check (raises if unreadable)
            except Exception as e:  # noqa: BLE001 - any unreadable footer
                why = f"unreadable footer ({type(e).__name__}: {str(e)[:160]})"
        if why:
            raise BadFileError(f"{f}: not a valid parquet file ({why}); fetch or regenerate it")
        return None
    if f.suffix == ".jsonl":
        if not raw.strip():
            raise BadFileError(f"{f}: empty file (expected JSON-lines records)")
        return parse_jsonl(f, decode_text(f, raw))
    records = check_json(f, raw)  # .json (a document or JSON lines) or a file given by name
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise BadFileError(f"{f}: expected a JSON list of records (objects), got a {type(records).__name__}"
                           + (" holding non-objects" if isinstance(records, list) else ""))
    return records


def read_rows(name: str, path=None, splits=("train",), revision: str | None = None):
    """Yield ``(where, row)`` of a dataset: local files under ``path`` or the hub (``HUB[name]``)."""
    import datasets

    if path is not None:
        for f in _files(path):
            records = check_local_file(f)
            if records is None:  # parquet
                try:
                    records = datasets.load_dataset("parquet", data_files=str(f), split="train")
                except Exception as e:  # arrow type errors etc.
                    raise ValueError(f"{f}: cannot be read as {name} records ({type(e).__name__}: {e})") from None
            for i, row in enumerate(records):
                yield f"{f}: record {i}", row
        return
    hub_id, config = HUB[name]
    for split in splits:
        ds = _hub_split(hub_id, config, split, revision)
        for i, row in enumerate(ds):
            yield f"{hub_id}[{config or 'default'}/{split}]: record {i}", row


def _hub_split(hub_id, config, split, revision):
    import datasets

    try:
        return datasets.load_dataset(hub_id, config, split=split, revision=revision)
    except Exception as e:
        if revision is None and "scripts are no longer supported" in str(e):  # script datasets: parquet branch
            return _hub_split(hub_id, config, split, "refs/convert/parquet")
        raise RuntimeError(
            f"could not load {hub_id} ({config or 'default'}, split {split}) from the Hugging Face hub: "
            f"{type(e).__name__}: {str(e)[:300]}. On a machine with internet run "
            f"`hf download --repo-type dataset {hub_id}` and point HF_HOME at that cache, or "
            f"pass path= to local files in the hub schema (json/jsonl/parquet).") from None


def _get(row, key, where, kind=str):
    """``row[key]`` checked for type (and non-empty text); errors name the record and field."""
    v = row.get(key) if isinstance(row, dict) else None
    ok = isinstance(v, kind) and not isinstance(v, bool) if kind is not bool else isinstance(v, bool)
    if ok and isinstance(v, str):
        ok = bool(v.strip())
    if not ok:
        raise ValueError(f"{where}: field {key!r} must be a non-empty {getattr(kind, '__name__', kind)}, got {v!r:.80}")
    return v


def _number(row, key, where, counts: dict, kind=int):
    """``row[key]`` as a number: an int (or float) as is, a string that spells one read as it and counted
    (``labels_as_strings``: an export that quoted its numbers), anything else an error naming record and field."""
    v = row.get(key) if isinstance(row, dict) else None
    if isinstance(v, str):
        try:
            n = kind(v.strip())
        except ValueError:
            n = None
        if n is not None and (kind is int or np.isfinite(n)):
            counts["labels_as_strings"] = counts.get("labels_as_strings", 0) + 1
            return n
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (kind is float or isinstance(v, int))
    if not ok or (kind is float and not np.isfinite(v)):
        raise ValueError(f"{where}: field {key!r} must be {'an integer' if kind is int else 'a finite number'}, "
                         f"got {v!r:.80}")
    return kind(v)


# --------------------------------------------------------------------------------- splitting
def user_groups(order: list[str], unseen_frac: float) -> dict[str, str]:
    """user -> "unseen" for the first ``n_unseen`` users of ``order`` (already shuffled), "seen" for the rest,
    with ``n_unseen = min(max(1, round(unseen_frac * n)), n - 1)`` (0 when ``unseen_frac`` is 0 or ``n < 2``).

    The one seen/unseen rule of Pref-LaMP (:mod:`lib.data.preflamp`) and the preference datasets (:func:`split_users`).
    """
    n = len(order)
    n_unseen = max(min(max(1, round(unseen_frac * n)), n - 1), 0) if unseen_frac > 0 else 0
    return {u: "unseen" if i < n_unseen else "seen" for i, u in enumerate(order)}


def n_test_pairs(n: int, test_frac: float) -> int:
    """How many of a user's ``n`` pairs are test: ``min(max(1, round(test_frac * n)), n - 1)``, so a user with
    at least 2 pairs has a train and a test pair."""
    return min(max(1, round(test_frac * n)), n - 1)


def _finish_drops(task: str, counts: dict, drops: dict | None) -> None:
    """Warn once with the non-zero drop counts of a load and copy them into ``drops`` (when given)."""
    counts = {k: v for k, v in counts.items() if v}
    if drops is not None:
        drops.update(counts)
    if counts:
        import warnings

        warnings.warn(f"{task}: skipped " + "; ".join(f"{v} {DROP_CAUSES[k]}" for k, v in counts.items()))


def _check_bad_fraction(task: str, n_bad: int, n_records: int, cause: str) -> None:
    if n_records and n_bad > MAX_BAD_FRACTION * n_records:
        raise ValueError(f"{task}: {n_bad} of {n_records} records are {DROP_CAUSES[cause]}: more than "
                         f"{MAX_BAD_FRACTION:.0%}, so the file as a whole looks wrong (not the {task} schema?)")


SPLIT_RULES = {"unseen_frac": fraction(lo_open=False), "test_frac": fraction(),
               "min_pairs": count(2, why="a train and a test pair per user"),
               "max_users": count(2, optional=True, why="a seen and an unseen user"),
               "max_pairs_per_user": count(2, optional=True, why="a train and a test pair per user"), "seed": count(0)}


def split_users(by_user: dict[str, list[dict]], task: str, unseen_frac: float = 0.25, test_frac: float = 0.25,
                min_pairs: int = 4, max_users: int | None = None, max_pairs_per_user: int | None = None,
                seed: int = 0, drops: dict | None = None, counts: dict | None = None) -> list[dict]:
    """Seeded seen/unseen user split and per-user train/test split; fills task/user_group/split.

    The rule, all from one ``random.Random(seed)``:

    1. users with at least ``min_pairs`` pairs are kept, sorted by id and shuffled; with ``max_users``
       only the first ``max_users`` of that order are kept (``n`` users, at least 2 or ``ValueError``);
    2. the first ``n_unseen`` users of the shuffled order are *unseen*, the others *seen*, where
       ``n_unseen = min(max(1, round(unseen_frac * n)), n - 1)`` (Python's ``round``: halves go to the
       even integer, e.g. 10 users x 0.25 -> 2, 6 x 0.25 -> 2) and 0 when ``unseen_frac`` is 0;
    3. then, user by user in sorted order, the user's pairs are shuffled (same generator), cut to
       ``max_pairs_per_user``, and the first ``n_test = min(max(1, round(test_frac * len(pairs))),
       len(pairs) - 1)`` are *test*, the rest *train*: every user has at least one pair of each
       (``min_pairs`` must be at least 2).

    Records come back grouped by user in sorted order; the split depends only on the users' ids, their
    pairs (in the given order) and the arguments. ``counts``: the loader's drop counts so far (cause -> n), to
    which the users below ``min_pairs`` are added; they are warned once, copied into ``drops`` when given, and
    listed in the error when fewer than 2 users are left.
    """
    check_values(f"{task}: split_users", SPLIT_RULES, {"unseen_frac": unseen_frac, "test_frac": test_frac,
                 "min_pairs": min_pairs, "max_users": max_users, "max_pairs_per_user": max_pairs_per_user, "seed": seed})
    rng = random.Random(seed)
    users = sorted(u for u, ps in by_user.items() if len(ps) >= min_pairs)
    thin = [ps for u, ps in by_user.items() if len(ps) < min_pairs]
    counts = dict(counts or {}) | {"users_below_min_pairs": len(thin),
                                   "pairs_of_users_below_min_pairs": sum(len(ps) for ps in thin)}
    rng.shuffle(users)
    users = users[:max_users] if max_users else users
    if len(users) < 2:
        dropped = "; ".join(f"{v} {DROP_CAUSES[k]}" for k, v in counts.items() if v) or "nothing dropped"
        raise ValueError(f"{task}: only {len(users)} user(s) with >= {min_pairs} pairs; need 2 (seen and unseen). "
                         f"Dropped on the way: {dropped}")
    _finish_drops(task, counts, drops)
    group = user_groups(users, unseen_frac)
    out = []
    for user in sorted(users):
        pairs = list(by_user[user])
        rng.shuffle(pairs)
        pairs = pairs[:max_pairs_per_user] if max_pairs_per_user else pairs
        n_test = n_test_pairs(len(pairs), test_frac)
        for j, p in enumerate(pairs):
            out.append(p | {"task": task, "user": user, "user_group": group[user],
                            "split": "test" if j < n_test else "train"})
    return out


# --------------------------------------------------------------------------------- datasets
def tldr_prompt(info: dict) -> str:
    """The prompt of one comparison: ``SUBREDDIT / TITLE / POST ... TL;DR:`` for a Reddit post (``info.post``),
    ``ARTICLE ... TL;DR:`` for a CNN/DM article (``info.article``, the release's other source)."""
    if info.get("post"):
        return f"SUBREDDIT: r/{info.get('subreddit') or ''}\nTITLE: {info.get('title') or ''}\nPOST: {info['post']}\n\nTL;DR:"
    return f"ARTICLE: {info['article']}\n\nTL;DR:"  # CNN/DM rows of the validation split


def load_tldr(path=None, splits=("train", "validation"), revision=None, **split_kw) -> list[dict]:
    """openai/summarize_from_feedback comparisons -> pair records (user = worker). Reddit records (``info.post``)
    and CNN/DM records (``info.article``, no post) both load; :func:`tldr_prompt` says which template each gets."""
    by_user, counts, n_records = defaultdict(list), {"empty_summary": 0, "identical_texts": 0}, 0
    for where, row in read_rows("tldr", path, splits, revision):
        n_records += 1
        info = _get(row, "info", where, dict)
        if not (info.get("post") or info.get("article")):
            raise ValueError(f"{where}: field 'info' has neither a 'post' nor an 'article'")
        summ = _get(row, "summaries", where, list)
        choice = _number(row, "choice", where, counts)
        if len(summ) != 2 or choice not in (0, 1):
            raise ValueError(f"{where}: field 'summaries' must hold 2 summaries and 'choice' be 0 or 1 "
                             f"(got {len(summ)} and {choice!r})")
        worker = _get(row, "worker", where)
        if not all(isinstance(s, dict) for s in summ):
            raise ValueError(f"{where}: field 'summaries' must hold 2 objects with a 'text', got {summ!r:.80}")
        texts = [s.get("text") for s in summ]
        if not all(isinstance(t, str) and t.strip() for t in texts):  # a real record: skipped and counted
            counts["empty_summary"] += 1
            continue
        texts = [t.strip() for t in texts]
        if texts[0] == texts[1]:
            counts["identical_texts"] += 1
            continue
        by_user[worker].append({"pair_id": f"tldr/{info.get('id', '')}/{worker}/{len(by_user[worker])}",
                                "prompt": tldr_prompt(info), "chosen": texts[choice], "rejected": texts[1 - choice],
                                "position": choice})  # where the chosen summary was shown: a position-only baseline
    _check_bad_fraction("tldr", counts["empty_summary"], n_records, "empty_summary")
    return split_users(by_user, "tldr", counts=counts, **split_kw)


def load_prism(path=None, splits=("train",), revision=None, pairs: str = "maxmin", **split_kw) -> list[dict]:
    """PRISM utterances -> pair records from the scores of responses in the same turn (user = user_id)."""
    if pairs not in ("maxmin", "all"):
        raise ValueError(f"pairs must be 'maxmin' or 'all', not {pairs!r}")
    turns, counts, n_records = defaultdict(list), {"score_out_of_range": 0}, 0
    for where, row in read_rows("prism", path, splits, revision):
        n_records += 1
        conv, user = _get(row, "conversation_id", where), _get(row, "user_id", where)
        turn = _number(row, "turn", where, counts)
        score = _number(row, "score", where, counts, float)
        if not 1 <= score <= 100:  # PRISM's ratings are 1-100: anything else is a broken or sentinel value
            counts["score_out_of_range"] += 1
            continue
        turns[(user, conv, turn)].append((score, _get(row, "model_response", where).strip(),
                                          _get(row, "user_prompt", where)))
    _check_bad_fraction("prism", counts["score_out_of_range"], n_records, "score_out_of_range")
    by_user = defaultdict(list)
    counts |= {"single_response_turn": 0, "tied_scores": 0, "identical_texts": 0}
    for (user, conv, turn), resp in sorted(turns.items()):
        if len(resp) < 2:
            counts["single_response_turn"] += 1
            continue
        resp.sort(key=lambda t: -t[0])
        cand = [(resp[0], resp[-1])] if pairs == "maxmin" else \
            [(a, b) for i, a in enumerate(resp) for b in resp[i + 1:]]
        for k, (a, b) in enumerate(cand):
            if a[0] <= b[0]:
                counts["tied_scores"] += 1
            elif a[1] == b[1]:
                counts["identical_texts"] += 1
            else:
                by_user[user].append({"pair_id": f"prism/{conv}/{turn}/{k}", "prompt": a[2],
                                      "chosen": a[1], "rejected": b[1]})
    return split_users(by_user, "prism", counts=counts, **split_kw)


def dirichlet_users(n_users: int, n_rms: int, alpha: float = 0.1, seed: int = 0) -> np.ndarray:
    """``[n_users, n_rms]`` reward-model weights of simulated users, each ~ Dirichlet(alpha)."""
    return np.random.default_rng(seed).dirichlet([alpha] * n_rms, size=n_users)


PERSONALLLM_RULES = {"n_users": count(2, why="a seen and an unseen user"), "alpha": number(0, lo_open=True),
                     "prompts_per_user": count(1), "seed": count(0)}


def load_personalllm(path=None, splits=("train",), revision=None, n_users: int = 100, alpha: float = 0.1,
                     prompts_per_user: int = 20, seed: int = 0, **split_kw) -> list[dict]:
    """PersonalLLM -> pair records of simulated users (Dirichlet mixtures of its reward columns).

    ``seed`` seeds the users' weights, their prompts and response pairs, and the user / pair split.
    """
    check_values("personalllm", PERSONALLLM_RULES, {"n_users": n_users, "alpha": alpha,
                                                    "prompts_per_user": prompts_per_user, "seed": seed})
    rows = list(read_rows("personalllm", path, splits, revision))
    if not rows:
        raise ValueError("PersonalLLM: no records")
    cols = [m.groups() for c in rows[0][1]
            if (m := re.fullmatch(r"response_(\d+)_(.+)", c)) and m.group(2) not in NON_REWARD_SUFFIXES]
    resp_ids = sorted({int(j) for j, _ in cols})
    rms = sorted({rm for _, rm in cols})
    if len(resp_ids) < 2 or not rms:
        raise ValueError(f"{rows[0][0]}: no 'response_<j>_<reward model>' score columns")
    prompts, S = [], np.empty((len(rows), len(resp_ids), len(rms)))
    texts = []
    for i, (where, row) in enumerate(rows):
        prompts.append(_get(row, "prompt", where))
        texts.append([_get(row, f"response_{j}", where) for j in resp_ids])
        for a, j in enumerate(resp_ids):
            for b, rm in enumerate(rms):
                v = row.get(f"response_{j}_{rm}")
                if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v):
                    raise ValueError(f"{where}: field 'response_{j}_{rm}' must be a finite number, got {v!r}")
                S[i, a, b] = v
    S = (S - S.mean((0, 1))) / S.std((0, 1)).clip(min=1e-8)
    W = dirichlet_users(n_users, len(rms), alpha, seed)
    rng = np.random.default_rng(seed + 1)
    by_user, counts = {}, {"tied_scores": 0, "identical_texts": 0}
    for u in range(n_users):
        user, recs = f"pllm{u:04d}", []
        for i in rng.choice(len(rows), size=min(prompts_per_user, len(rows)), replace=False):
            a, b = rng.choice(len(resp_ids), size=2, replace=False)
            ra, rb = S[i, a] @ W[u], S[i, b] @ W[u]
            if ra == rb or texts[i][a] == texts[i][b]:
                counts["tied_scores" if ra == rb else "identical_texts"] += 1
                continue
            c, r = (a, b) if ra > rb else (b, a)
            recs.append({"pair_id": f"personalllm/{user}/{i}/{resp_ids[c]}-{resp_ids[r]}", "prompt": prompts[i],
                         "chosen": texts[i][c], "rejected": texts[i][r]})
        by_user[user] = recs
    return split_users(by_user, "personalllm", seed=seed, counts=counts, **split_kw)


LOADERS = {"tldr": load_tldr, "prism": load_prism, "personalllm": load_personalllm}


def load(name: str, **kw) -> list[dict]:
    """``load("tldr" | "prism" | "personalllm", path=None, **kw)``; ``drops={}`` receives the skip counts by cause."""
    if name not in LOADERS:
        raise KeyError(f"unknown preference dataset {name!r}; known: {sorted(LOADERS)}")
    return LOADERS[name](**kw)
