"""Behavioural evaluation on Pref-LaMP: generate for held-out queries, score against the user's own output.

Systems (one tidy row per query and system setting):

* ``base``: the policy's zero-shot greedy output (no personalisation);
* ``icl``: greedy output with k of the user's own profile examples in the prompt (lib/evaluation/icl.py), a k sweep;
* ``rgd``: reward-guided decoding (ARGS, Khanov et al. 2024; lib/decoding/rgd.py) with each reward model, a w sweep.

Each generation is cleaned exactly like the Pref-LaMP rejected responses
(:func:`lib.data.preflamp.clean_generation`: first line, no quotes or "Title:" label) and scored with
ROUGE-1/ROUGE-L F-measure against the user's real output (LaMP conventions, lib/evaluation/metrics.py); on
synthetic users also whether it follows the user's latent rule (:func:`lib.data.synthetic.follows_rule`).
The paper reports that ICL beats the best reward-guided method by about 3 ROUGE-1 at 7B.

Caching and determinism: generations are cached per (policy, user) in one JSON file written
atomically after every batch, keyed by everything that determines the output, so an interrupted run
resumes. Users are batched in fixed blocks of consecutive sorted users; batches never cross a block,
so a block's results never depend on which other blocks are in the run (that is what makes sharding
blocks across processes exact, lib/evaluation/shard.py and scripts/shard_generate.py).
The tables of the scored generations (summaries, best systems, ICL vs RGD) are in lib/report/results.py.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ..core.io import sha256_text, write_json
from ..core.params import RULES, check_values
from ..core.progress import bar
from ..core.schema import ROW_COLUMNS
from ..decoding.greedy import greedy_generate
from . import deployment, icl, metrics

QUERY_FIELDS = ("query_id", "task", "user", "prompt", "reference", "profile")


def check_queries(queries: list[dict]) -> None:
    """Clear errors for malformed query records (names the record and the field)."""
    seen = set()
    for i, q in enumerate(queries):
        for f in QUERY_FIELDS:
            if f not in q:
                raise KeyError(f"query record {i} ({q.get('query_id', '?')!r}) has no field {f!r}")
        if not isinstance(q["reference"], str):
            raise TypeError(f"query {q['query_id']!r}: field 'reference' must be a string")
        if q["query_id"] in seen:
            raise ValueError(f"duplicate query_id {q['query_id']!r}")
        seen.add(q["query_id"])


def by_user(queries: list[dict]) -> dict[str, list[dict]]:
    """user -> that user's queries, users and queries in sorted (deterministic) order."""
    out: dict[str, list[dict]] = {}
    for q in sorted(queries, key=lambda q: (str(q["user"]), str(q["query_id"]))):
        out.setdefault(str(q["user"]), []).append(q)
    return out


def user_blocks(users, size: int) -> list[list[str]]:
    """Sorted unique users in consecutive blocks of ``size``: the unit of batching and of sharding."""
    if size < 1:
        raise ValueError(f"user_block must be >= 1, not {size}")
    users = sorted(set(map(str, users)))
    return [users[i : i + size] for i in range(0, len(users), size)]


class UserCache:
    """key -> generation for one (policy, user), one JSON file rewritten atomically per batch."""

    def __init__(self, cache_dir, model_name: str, user: str):
        self.path = None if cache_dir is None else \
            Path(cache_dir) / model_name.replace("/", "_") / f"{sha256_text(user)[:20]}.json"
        self.data: dict[str, str] = {}
        if self.path is not None and self.path.exists():
            try:
                self.data = json.loads(self.path.read_text(encoding="utf-8"))["generations"]
            except (json.JSONDecodeError, KeyError) as e:
                raise ValueError(f"generation cache {self.path} is unreadable ({e}); delete it to regenerate") from None
        self.user = user

    def save(self) -> None:
        if self.path is not None:
            write_json(self.path, {"user": self.user, "generations": self.data}, indent=None)


def _key(model_name: str, job: dict, max_new_tokens: int, extra: str = "") -> str:
    return sha256_text("\x1f".join([model_name, job["system"], str(job["param"]), str(job["rm"]),
                                    str(max_new_tokens), extra, job["message"]]))[:32]


def rm_fingerprint(rm) -> str:
    """Hash of a reward model's weights and of whether it guides with calibrated rewards (part of the
    cache key: a retrained model, or the same model guiding raw, is never served stale)."""
    if not hasattr(rm, "state_dict"):
        return sha256_text(repr(rm))[:16]
    parts = [f"{type(rm).__name__}|{getattr(rm, 'backbone', '')}|calibrated={getattr(rm, 'calibrated', None)}"]
    for k, v in sorted(rm.state_dict().items()):
        parts.append(f"{k}:{hashlib.sha256(v.detach().cpu().float().numpy().tobytes()).hexdigest()[:16]}")
    return sha256_text("|".join(parts))[:16]


def limit_queries(queries: list[dict], per_user: int | None) -> list[dict]:
    """The first ``per_user`` queries (by query_id) of every user; None keeps all."""
    if per_user is None:
        return list(queries)
    return [q for qs in by_user(queries).values() for q in qs[:per_user]]


def user_jobs(qs: list[dict], tok, icl_ks=(), icl_retriever: str = "bm25", icl_max_tokens: int = 512,
              rm_names=(), ws=(), seed: int = 0) -> list[dict]:
    """The work list of one user: base, ICL for each k, RGD for each (rm, w); fixed order.

    ``ws``: a list (every reward model at each w) or a mapping rm -> ``(w, w_decode)``, its one deployed setting
    (notebook 04's ``deployed_settings.csv``: ``w`` nominal, ``w_decode`` the weight on its decoding reward).
    ``w = 0`` is the base policy exactly: no RGD job (:func:`evaluate` copies the base rows)."""
    jobs = []
    for q in qs:
        jobs.append({"q": q, "system": "base", "param": None, "rm": None, "message": q["prompt"], "n_examples": 0})
    for k in icl_ks:
        for q in qs:
            p = icl.build_prompt(q, tok, k=k, retriever=icl_retriever, max_tokens=icl_max_tokens, seed=seed)
            jobs.append({"q": q, "system": "icl", "param": k, "rm": None, "message": p.message,
                         "n_examples": p.n_examples})
    for rm in rm_names:
        for w, wd in rm_settings(ws, rm):
            if float(w) == 0.0:
                continue
            for q in qs:
                jobs.append({"q": q, "system": "rgd", "param": w, "w_decode": wd, "rm": rm, "message": q["prompt"],
                             "n_examples": 0})
    return jobs


def rm_settings(ws, rm: str) -> list[tuple[float, float]]:
    """``[(w, w_decode)]`` of one reward model: each w of a list (``w_decode = w``), or its deployed setting."""
    if isinstance(ws, dict):
        if rm not in ws:
            raise KeyError(f"reward model {rm!r} has no deployed setting (notebook 04's deployed_settings.csv)")
        w, wd = ws[rm]
        return [(float(w), float(wd))]
    return [(float(w), float(w)) for w in ws]


def _rgd_group(rm, name: str) -> tuple:
    """Batch key of an RGD job: reward models on one backbone decode as rows of the same batches."""
    if hasattr(rm, "backbone"):
        return ("rgd", rm.backbone, rm.feature_kind, rm.finetuned)
    return ("rgd", name)


def _generate_block(jobs, model, tok, model_name, caches: dict, rms, rgd_fn, max_new_tokens, batch_size,
                    rgd_tag: str, rgd_batch_size: int) -> list[str]:
    """Generations for a block's jobs in fixed batches, cached batch by batch.

    Greedy jobs (base and every ICL k) share batches of ``batch_size``, shortest prompts first (little left
    padding). RGD jobs of every (reward model, w) on one reward backbone share batches of ``rgd_batch_size``
    rows: the policy (and reward backbone) forward is shared by all rows, each row applies its own head and w
    (:func:`lib.decoding.rgd.generate` with per-row reward models). Greedy rows stay out of RGD batches: on a
    CPU a row there costs k candidate tokens per step instead of one.
    """
    groups: dict[tuple, list[int]] = {}
    for i, j in enumerate(jobs):
        g = ("greedy",) if j["system"] != "rgd" else _rgd_group(rms[j["rm"]], j["rm"])
        groups.setdefault(g, []).append(i)
    if ("greedy",) in groups:  # prompts of similar length together (ICL prompts run from a query to the token budget)
        groups["greedy",].sort(key=lambda i: (len(jobs[i]["message"]), i))
    fp = {name: rm_fingerprint(rms[name]) for name in {j["rm"] for j in jobs if j["system"] == "rgd"}}
    keys = [_key(model_name, j, max_new_tokens,
                 f"{rgd_tag}|{fp[j['rm']]}|rows{rgd_batch_size}|wd{j['w_decode']!r}" if j["system"] == "rgd"
                 else "greedy-plain")
            for j in jobs]
    out: list[str | None] = [caches[str(j["q"]["user"])].data.get(k) for j, k in zip(jobs, keys)]
    for g, idx in groups.items():
        size = batch_size if g[0] == "greedy" else rgd_batch_size
        for s in range(0, len(idx), size):
            b = idx[s : s + size]
            if all(out[i] is not None for i in b):
                continue
            msgs = [jobs[i]["message"] for i in b]
            if g[0] == "greedy":
                gens = greedy_generate(model, tok, msgs, max_new_tokens, batch_size=len(b))
            else:
                if rgd_fn is None:
                    raise ValueError("rgd jobs need rgd_fn (see lib.evaluation.generation.rgd_adapter)")
                gens = rgd_fn(model, tok, [rms[jobs[i]["rm"]] for i in b], msgs, [jobs[i]["q"]["user"] for i in b],
                              [float(jobs[i]["w_decode"]) for i in b], max_new_tokens)
            for i, t in zip(b, gens):
                out[i] = t
                caches[str(jobs[i]["q"]["user"])].data[keys[i]] = t
            for u in sorted({str(jobs[i]["q"]["user"]) for i in b}):
                caches[u].save()
    return out


def _rows(jobs, gens, model_name) -> list[dict]:
    from ..data.preflamp import clean_generation
    from ..data.synthetic import follows_rule

    clean = [clean_generation(g) for g in gens]
    sc = metrics.rouge_scores(clean, [j["q"]["reference"] for j in jobs])
    rows = []
    for j, c, r1, rl in zip(jobs, clean, sc.rouge1, sc.rougeL):
        q = j["q"]
        rows.append({"task": q["task"], "user": str(q["user"]), "user_group": q.get("user_group"),
                     "query_id": str(q["query_id"]), "system": j["system"], "param": j["param"], "rm": j["rm"],
                     "model": model_name, "generation": c, "reference": q["reference"], "rouge1": r1,
                     "rougeL": rl, "follows_rule": follows_rule(q["rule"], c) if q.get("rule") else None,
                     "n_examples": j["n_examples"]})
    return rows


def evaluate(queries: list[dict], model, tok, model_name: str, *, icl_ks=(1, 2, 4), icl_retriever: str = "bm25",
             icl_max_tokens: int = 512, rms: dict | None = None, ws=(0.5, 1.0, 2.0),
             rgd_fn: Callable | None = None, rgd_tag: str = "", max_new_tokens: int = 24, batch_size: int = 8,
             rgd_batch_size: int = 48, cache_dir=None, seed: int = 0, unknown_users: str = "error",
             user_block: int = 8, progress: bool = True, cache_id: str | None = None) -> pd.DataFrame:
    """Generate and score every system for ``queries``; one tidy row per (query, system setting).

    ``rms`` maps a reward-model name (the ``rm`` column) to a loaded reward model; ``rgd_fn(model,
    tok, rms, messages, users, ws, max_new_tokens) -> list[str]`` decodes a batch whose rows each
    have their own reward model and w (see :func:`rgd_adapter`); ``rgd_tag`` must name its decoding
    settings (it is part of the cache key). ``batch_size`` rows per greedy batch (base, ICL),
    ``rgd_batch_size`` rows per RGD batch (every reward model and w of a backbone mixed).
    Users are processed in fixed blocks of ``user_block`` consecutive sorted users (:func:`user_blocks`);
    batches mix the users of one block only, so a block's results never depend on the rest of the run.
    A reward model that does not know a user (an unseen user it was not adapted to) is an error,
    or with ``unknown_users="skip"`` its RGD rows for that user are left out with a warning. ``cache_id``: what
    the generation cache keys the policy by (default ``model_name``; :func:`lib.core.models.cache_id` names the
    weights a mapped name runs).
    """
    check_queries(queries)
    if unknown_users not in ("error", "skip"):
        raise ValueError(f"unknown_users must be 'error' or 'skip', not {unknown_users!r}")
    rms = rms or {}
    rows, skipped = [], []
    per_user = by_user(queries)
    blocks = user_blocks(per_user, user_block)
    for block in bar(blocks, desc=f"evaluate[{model_name}]", progress=progress):
        jobs, known = [], {}
        for user in block:
            names = known.setdefault(str(user), [])
            for name in sorted(rms):
                try:
                    if rms[name] is not None and hasattr(rms[name], "user_index"):
                        rms[name].user_index([user])
                    names.append(name)
                except KeyError:
                    if unknown_users == "error":
                        raise
                    skipped.append((name, user))
            jobs += user_jobs(per_user[user], tok, icl_ks, icl_retriever, icl_max_tokens, names,
                              ws if rms else (), seed)
        # one batch order for the block: system setting first, then user and query
        jobs.sort(key=lambda j: (j["system"], str(j["rm"]), -1.0 if j["param"] is None else float(j["param"]),
                                 str(j["q"]["user"]), str(j["q"]["query_id"])))
        caches = {u: UserCache(cache_dir, model_name, u) for u in block}
        gens = _generate_block(jobs, model, tok, cache_id or model_name, caches, rms, rgd_fn, max_new_tokens, batch_size,
                               rgd_tag, rgd_batch_size)
        block_rows = _rows(jobs, gens, model_name)
        rows += block_rows + _base_as_rgd(block_rows, known, ws if rms else ())
    if skipped:
        warnings.warn(f"evaluate: RGD skipped for {len(skipped)} (reward model, user) pairs the model does not "
                      f"know, e.g. {skipped[:3]}", stacklevel=2)
    return sort_rows(pd.DataFrame(rows, columns=ROW_COLUMNS))


def _base_as_rgd(rows: list[dict], known: dict, ws) -> list[dict]:
    """RGD at ``w = 0`` is the base policy exactly: each reward model (of those that know the user, ``known``:
    user -> names) whose setting includes 0 gets copies of the user's base rows (``system="rgd"``,
    ``param=0.0``) instead of a decode."""
    out = []
    for r in rows:
        if r["system"] == "base":
            out += [dict(r, system="rgd", rm=n, param=0.0) for n in known.get(str(r["user"]), [])
                    if any(w == 0.0 for w, _ in rm_settings(ws, n))]
    return out


def sort_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Canonical row order (user, query, system, rm, param): merged shards compare equal to one run."""
    key = df.assign(_p=df["param"].astype(float).fillna(-1.0), _rm=df["rm"].fillna(""))
    key = key.sort_values(["task", "user", "query_id", "system", "_rm", "_p"], kind="stable")
    return key.drop(columns=["_p", "_rm"]).reset_index(drop=True)


def rgd_adapter(policy_name: str, **rgd_kwargs) -> tuple[Callable, str]:
    """(rgd_fn, rgd_tag) calling :func:`lib.decoding.rgd.generate` with fixed decoding settings (e.g. ``k=10``:
    fields of :class:`lib.decoding.rgd.DecodingSettings` other than ``max_new_tokens``; the tag is their JSON).

    ``rgd_fn(model, tok, rms, messages, users, ws, max_new_tokens)`` decodes one batch whose rows
    each have their own reward model (all on one backbone) and w. A reward backbone that is not the
    policy (MiniLM, another LM) is loaded once per backbone name and reused across batches.
    """
    from ..decoding import rgd

    feats: dict[str, object] = {}

    def fn(model, tok, rms, messages, users, ws, max_new_tokens):
        first = next((m for m in rms if m is not None), None)
        feat = None
        if first is not None:
            own = first._featurizer  # attached by load_task_rms; else one loaded per backbone name
            _, feat = first.decoding_path(policy_name, tok, own if own is not None else feats.get(first.backbone),
                                          next(model.parameters()).device)
            if feat is not None and first._featurizer is None:
                feats[first.backbone] = feat  # one reward backbone per name, reused across batches
        settings = rgd.DecodingSettings(max_new_tokens=max_new_tokens, **rgd_kwargs)
        return rgd.generate(model, tok, messages, users=users, rm=list(rms), w=list(ws), settings=settings,
                            policy_name=policy_name, featurizer=feat).texts

    return fn, json.dumps(rgd_kwargs, sort_keys=True)


# --- val / test halves -----------------------------------------------------------------------------
def query_halves(queries: list[dict], seed: int = 0, val_frac: float = 0.5) -> dict[str, str]:
    """query_id -> "val" (selects ICL's k and the best RGD reward model) or "test" (reports); a seeded hash
    split (:func:`lib.evaluation.selection.split_halves`) *within each task* (a split across tasks left LaMP-7
    with 4 val queries), the same for every policy and system."""
    from .selection import split_halves

    out = {}
    for task in sorted({q["task"] for q in queries}):
        out.update(split_halves([str(q["query_id"]) for q in queries if q["task"] == task], seed, val_frac))
    return out


# --- notebook 05 as functions (the notebook and scripts/shard_generate.py call them) ----------------
GENERATION_PARAMS = ("seed", "tasks", "queries_per_user", "icl_ks", "icl_retriever", "icl_max_tokens", "rgd_ws",
                     "rgd_rms", "calibrated", "rgd_k", "rm_methods", "rm_backbones", "rm_seeds", "rm_prefix_train",
                     "unknown_users", "max_new_tokens", "batch_size", "rgd_batch_size", "user_block")


def _check_params(params: dict) -> None:
    missing = [k for k in GENERATION_PARAMS if k not in params]
    if missing:
        raise KeyError(f"generation parameters {missing} missing (notebook 05's parameters cell declares them)")
    check_values("generation parameters", RULES, {k: params[k] for k in GENERATION_PARAMS})


def generation_queries(P, params: dict) -> list[dict]:
    """Notebook 05's queries: the held-out Pref-LaMP queries of ``params["tasks"]``, the first
    ``params["queries_per_user"]`` of each user (:func:`limit_queries`)."""
    from ..data.preflamp import load_queries

    _check_params(params)
    queries = [q for q in load_queries(P.preflamp) if q["task"] in params["tasks"]]
    return limit_queries(queries, params["queries_per_user"])


def generate_policy_rows(P, policy: str, model, tok, rm_index: pd.DataFrame, params: dict, queries=None,
                         progress: bool = True) -> pd.DataFrame:
    """Notebook 05's rows of one policy: for every task, its reward models selected from ``rm_index``
    (:func:`lib.rewards.read_rm_index`, named by its unique ``rm`` column), loaded and adapted to unseen users
    (:func:`lib.rewards.load_task_rms`), then :func:`evaluate` of base / ICL / RGD with ``params`` (the keys of
    notebook 05's parameters cell, :data:`GENERATION_PARAMS`). ``queries``: default
    :func:`generation_queries`; a subset of whole users gives exactly those users' rows (sharding).
    Rows sorted by :func:`sort_rows`; generations cached under ``P.cache / "generation"``."""
    from ..data.preflamp import load_pairs
    from ..rewards import load_task_rms, select_rms

    _check_params(params)
    p = params
    queries = generation_queries(P, p) if queries is None else queries
    rgd_fn, rgd_tag = rgd_adapter(policy, k=p["rgd_k"])
    deployed = deployment.read_deployed(P, p) if p["rgd_ws"] == "deployed" else None
    frames = []
    for task in p["tasks"]:
        sel = select_rms(rm_index, task, p["rm_methods"], p["rm_backbones"], p["rm_seeds"], p["rm_prefix_train"],
                         policy=policy)
        ws = p["rgd_ws"]
        if deployed is not None:
            d = deployed[(deployed.task == task) & (deployed.policy == policy)]
            if p["rgd_rms"] == "method_picks":
                d = d[d.method_pick]
            sel = sel[sel.rm.isin(set(d.rm))]
            ws = {r.rm: (r.w, r.w_decode) for r in d.itertuples()}
        rms = load_task_rms(sel, load_pairs(P.preflamp, task), policy, model, tok, P.cache / "features",
                            calibrated=p["calibrated"])
        if progress:
            how = "at its deployed w" if deployed is not None else f"x {len(ws)} w"
            print(f"{policy} / {task}: {len(rms)} reward models {how}, ICL k={p['icl_ks']}")
        frames.append(evaluate(
            [q for q in queries if q["task"] == task], model, tok, policy, icl_ks=p["icl_ks"],
            icl_retriever=p["icl_retriever"], icl_max_tokens=p["icl_max_tokens"], rms=rms, ws=ws,
            rgd_fn=rgd_fn, rgd_tag=rgd_tag, max_new_tokens=p["max_new_tokens"], batch_size=p["batch_size"],
            rgd_batch_size=p["rgd_batch_size"], cache_dir=P.cache / "generation", seed=p["seed"],
            unknown_users=p["unknown_users"], user_block=p["user_block"], progress=progress,
            cache_id=getattr(model, "cache_id", None)))  # set by models.load_causal_lm
    frames = [f for f in frames if len(f)]  # pandas ignores empty frames' dtypes in concat (and warns)
    return sort_rows(pd.concat(frames, ignore_index=True)) if frames else pd.DataFrame(columns=ROW_COLUMNS)


def finish_generations(frames: list[pd.DataFrame], queries: list[dict], seed: int = 0,
                       val_frac: float = 0.5) -> pd.DataFrame:
    """Notebook 05's ``generations.csv`` table: the policies' rows (frames in the order of ``policies``)
    in :func:`sort_rows` order with the ``half`` (val / test) of each query over all ``queries``."""
    frames = [f for f in frames if len(f)]
    results = sort_rows(pd.concat(frames, ignore_index=True)) if frames else pd.DataFrame(columns=ROW_COLUMNS)
    results["half"] = results.query_id.map(query_halves(queries, seed, val_frac))
    return results
