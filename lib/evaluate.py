"""Behavioural evaluation on Pref-LaMP: generate for held-out queries, score against the user's own output.

Systems (one tidy row per query and system setting):

* ``base``: the policy's zero-shot greedy output (no personalisation);
* ``icl``: greedy output with k of the user's own profile examples in the prompt (lib/icl.py), a k sweep;
* ``rgd``: reward-guided decoding (ARGS, Khanov et al. 2024; lib/rgd.py) with each reward model, a w sweep.

Each generation is cleaned exactly like the Pref-LaMP rejected responses
(:func:`lib.preflamp.clean_generation`: first line, no quotes or "Title:" label) and scored with
ROUGE-1/ROUGE-L F-measure against the user's real output (LaMP conventions, lib/metrics.py); on
synthetic users also whether it follows the user's latent rule (:func:`lib.synthetic.follows_rule`).
The paper reports that ICL beats the best reward-guided method by about 3 ROUGE-1 at 7B.

Caching and determinism: generations are cached per (policy, user) in one JSON file written
atomically after every batch, keyed by everything that determines the output, so an interrupted run
resumes. Users are batched in fixed blocks of consecutive sorted users; batches never cross a block,
so a block's results never depend on which other blocks are in the run (that is what makes sharding
blocks across processes exact, lib/shard.py and scripts/shard_generate.py).
"""
from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from . import icl, metrics, models
from .io import sha256_text, write_json

ROW_COLUMNS = ["task", "user", "user_group", "query_id", "system", "param", "rm", "model", "generation",
               "reference", "rouge1", "rougeL", "follows_rule", "n_examples"]
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


def write_results(df: pd.DataFrame, path) -> Path:
    """Rows to CSV atomically (the artifact notebooks 05 -> 06 share)."""
    from .io import atomic_path

    with atomic_path(path, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False)
    return Path(path)


def read_table(path, columns, made_by: str, **read_kw) -> pd.DataFrame:
    """A pipeline CSV artifact; a clear error when it is missing (naming the step that writes it) or lacks columns."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run {made_by} first")
    df = pd.read_csv(path, **read_kw)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"{path}: columns {missing} missing (has {list(df.columns)})")
    return df


def read_results(path) -> pd.DataFrame:
    df = read_table(path, ROW_COLUMNS, "notebook 05 (make generation)",
                    dtype={"user": str, "query_id": str, "generation": str, "reference": str})
    df["generation"] = df["generation"].fillna("")
    return df


def user_jobs(qs: list[dict], tok, icl_ks=(), icl_retriever: str = "bm25", icl_max_tokens: int = 512,
              rm_names=(), ws=(), seed: int = 0) -> list[dict]:
    """The work list of one user: base, ICL for each k, RGD for each (rm, w); fixed order."""
    jobs = []
    for q in qs:
        jobs.append({"q": q, "system": "base", "param": None, "rm": None, "message": q["prompt"], "n_examples": 0})
    for k in icl_ks:
        for q in qs:
            p = icl.build_prompt(q, tok, k=k, retriever=icl_retriever, max_tokens=icl_max_tokens, seed=seed)
            jobs.append({"q": q, "system": "icl", "param": k, "rm": None, "message": p.message,
                         "n_examples": p.n_examples})
    for rm in rm_names:
        for w in ws:
            for q in qs:
                jobs.append({"q": q, "system": "rgd", "param": w, "rm": rm, "message": q["prompt"], "n_examples": 0})
    return jobs


def _rgd_group(rm, name: str) -> tuple:
    """Batch key of an RGD job: reward models on one backbone decode as rows of the same batches."""
    if hasattr(rm, "backbone"):
        return ("rgd", rm.backbone, rm.feature_kind, rm.finetuned)
    return ("rgd", name)


def _generate_block(jobs, model, tok, model_name, caches: dict, rms, rgd_fn, max_new_tokens, batch_size,
                    rgd_tag: str, rgd_batch_size: int) -> list[str]:
    """Generations for a block's jobs in fixed batches, cached batch by batch.

    Greedy jobs (base and every ICL k) share batches of ``batch_size``. RGD jobs of every (reward
    model, w) on one reward backbone share batches of ``rgd_batch_size`` rows: the policy (and
    reward backbone) forward is shared by all rows, each row applies its own head and w
    (:func:`lib.rgd.generate` with per-row reward models). Greedy rows stay out of RGD batches: on a
    CPU a row there costs k candidate tokens per step instead of one.
    """
    groups: dict[tuple, list[int]] = {}
    for i, j in enumerate(jobs):
        g = ("greedy",) if j["system"] != "rgd" else _rgd_group(rms[j["rm"]], j["rm"])
        groups.setdefault(g, []).append(i)
    fp = {name: rm_fingerprint(rms[name]) for name in {j["rm"] for j in jobs if j["system"] == "rgd"}}
    keys = [_key(model_name, j, max_new_tokens,
                 f"{rgd_tag}|{fp[j['rm']]}|rows{rgd_batch_size}" if j["system"] == "rgd" else "greedy-plain")
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
                gens = models.greedy_generate(model, tok, msgs, max_new_tokens, batch_size=len(b))
            else:
                if rgd_fn is None:
                    raise ValueError("rgd jobs need rgd_fn (see lib.evaluate.rgd_adapter)")
                gens = rgd_fn(model, tok, [rms[jobs[i]["rm"]] for i in b], msgs, [jobs[i]["q"]["user"] for i in b],
                              [float(jobs[i]["param"]) for i in b], max_new_tokens)
            for i, t in zip(b, gens):
                out[i] = t
                caches[str(jobs[i]["q"]["user"])].data[keys[i]] = t
            for u in sorted({str(jobs[i]["q"]["user"]) for i in b}):
                caches[u].save()
    return out


def _rows(jobs, gens, model_name) -> list[dict]:
    from .preflamp import clean_generation
    from .synthetic import follows_rule

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
             user_block: int = 8, progress: bool = True) -> pd.DataFrame:
    """Generate and score every system for ``queries``; one tidy row per (query, system setting).

    ``rms`` maps a reward-model name (the ``rm`` column) to a loaded reward model; ``rgd_fn(model,
    tok, rms, messages, users, ws, max_new_tokens) -> list[str]`` decodes a batch whose rows each
    have their own reward model and w (see :func:`rgd_adapter`); ``rgd_tag`` must name its decoding
    settings (it is part of the cache key). ``batch_size`` rows per greedy batch (base, ICL),
    ``rgd_batch_size`` rows per RGD batch (every reward model and w of a backbone mixed).
    Users are processed in fixed blocks of ``user_block`` consecutive sorted users (:func:`user_blocks`);
    batches mix the users of one block only, so a block's results never depend on the rest of the run.
    A reward model that does not know a user (an unseen user it was not adapted to) is an error,
    or with ``unknown_users="skip"`` its RGD rows for that user are left out with a warning.
    """
    check_queries(queries)
    if unknown_users not in ("error", "skip"):
        raise ValueError(f"unknown_users must be 'error' or 'skip', not {unknown_users!r}")
    rms = rms or {}
    rows, skipped = [], []
    per_user = by_user(queries)
    blocks = user_blocks(per_user, user_block)
    for block in tqdm(blocks, desc=f"evaluate[{model_name}]", disable=not progress):
        jobs = []
        for user in block:
            names = []
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
        gens = _generate_block(jobs, model, tok, model_name, caches, rms, rgd_fn, max_new_tokens, batch_size, rgd_tag,
                               rgd_batch_size)
        rows += _rows(jobs, gens, model_name)
    if skipped:
        warnings.warn(f"evaluate: RGD skipped for {len(skipped)} (reward model, user) pairs the model does not "
                      f"know, e.g. {skipped[:3]}", stacklevel=2)
    return sort_rows(pd.DataFrame(rows, columns=ROW_COLUMNS))


def sort_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Canonical row order (user, query, system, rm, param): merged shards compare equal to one run."""
    key = df.assign(_p=df["param"].astype(float).fillna(-1.0), _rm=df["rm"].fillna(""))
    key = key.sort_values(["task", "user", "query_id", "system", "_rm", "_p"], kind="stable")
    return key.drop(columns=["_p", "_rm"]).reset_index(drop=True)


def rgd_adapter(policy_name: str, **rgd_kwargs) -> tuple[Callable, str]:
    """(rgd_fn, rgd_tag) calling :func:`lib.rgd.generate` with fixed decoding settings (e.g. ``k=10``).

    ``rgd_fn(model, tok, rms, messages, users, ws, max_new_tokens)`` decodes one batch whose rows
    each have their own reward model (all on one backbone) and w. A reward backbone that is not the
    policy (MiniLM, another LM) is loaded once per backbone name and reused across batches.
    """
    from . import rgd

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
        return rgd.generate(model, tok, messages, users=users, rm=list(rms), w=list(ws), max_new_tokens=max_new_tokens,
                            policy_name=policy_name, featurizer=feat, **rgd_kwargs).texts

    return fn, json.dumps(rgd_kwargs, sort_keys=True)


# --- summaries ---------------------------------------------------------------------------------------
def query_halves(queries: list[dict], seed: int = 0, val_frac: float = 0.5) -> dict[str, str]:
    """query_id -> "val" (selects ICL's k and each reward model's w) or "test" (reports); a seeded hash
    split (:func:`lib.policy_acc.split_halves`), the same for every policy and system."""
    from .policy_acc import split_halves

    return split_halves([str(q["query_id"]) for q in queries], seed, val_frac)


def summarize(df: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mean ROUGE-1/L (bootstrap CI of ROUGE-1) and rule-following rate per system setting (and per
    ``half`` when the results have one, see :func:`query_halves`)."""
    rows = []
    cols = ["task", "model", "system", "rm", "param"] + (["half"] if "half" in df else [])
    for key, g in df.groupby(cols, dropna=False, sort=True):
        lo, hi = metrics.bootstrap_ci(g["rouge1"], n_boot=n_boot, seed=seed)
        fr = g["follows_rule"].dropna()
        rows.append({**dict(zip(cols, key)), "n": len(g), "rouge1": g["rouge1"].mean(), "rouge1_lo": lo,
                     "rouge1_hi": hi, "rougeL": g["rougeL"].mean(),
                     "follows_rule": fr.astype(float).mean() if len(fr) else float("nan")})
    return pd.DataFrame(rows)


def _pick(val: pd.DataFrame, test: pd.DataFrame, keys=("rm", "param")) -> pd.Series | None:
    """The test row of the setting with the best val ROUGE-1 (ties: the smaller param, then the name)."""
    if val.empty:
        return None
    v = val.assign(_p=val["param"].astype(float).fillna(-1.0), _rm=val["rm"].fillna(""))
    best = v.sort_values(["rouge1", "_p", "_rm"], ascending=[False, True, True], kind="stable").iloc[0]
    t = test
    for k in keys:
        t = t[(t[k] == best[k]) | (t[k].isna() & pd.isna(best[k]))]
    if t.empty:
        return None
    row = t.iloc[0].copy()
    row["val_rouge1"] = best["rouge1"]
    return row


def best_systems(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (task, model): base, the best ICL k and the best RGD (rm, w).

    With a ``half`` column (:func:`query_halves`) the best setting is chosen on the *val* queries and
    reported on the *test* queries (``val_rouge1`` keeps the selection score); without one it is picked on
    the evaluation queries themselves (an oracle choice, optimistic for ICL and RGD alike).
    """
    rows = []
    halves = "half" in summary
    for (_task, _model), g in summary.groupby(["task", "model"], sort=True):
        for system in ("base", "icl", "rgd"):
            s = g[g.system == system]
            if not len(s):
                continue
            if halves:
                r = _pick(s[s.half == "val"], s[s.half == "test"])
                if r is not None:
                    rows.append(r)
            else:
                rows.append(s.sort_values(["rouge1", "param"], ascending=[False, True], kind="stable").iloc[0])
    out = pd.DataFrame(rows).reset_index(drop=True)
    if len(out):
        out["params_m"] = [models.REGISTRY[m].params_m if m in models.REGISTRY else float("nan") for m in out.model]
    return out


def select_rgd_w(summary: pd.DataFrame) -> pd.DataFrame:
    """Each reward model's w chosen on the val queries, with its test ROUGE there.

    Candidates are the RGD settings of that reward model and ``w = 0``, the base policy (a reward model
    that does not help on validation falls back to the base policy instead of being reported at a w that
    wrecks it). One row per (task, model, rm): ``w_selected``, ``val_rouge1``, and the test ``rouge1``,
    ``rouge1_lo/hi``, ``rougeL``, ``follows_rule``, ``n``.
    """
    if "half" not in summary:
        raise ValueError("select_rgd_w needs results with a 'half' column (see query_halves)")
    rows = []
    for (_task, _model), g in summary.groupby(["task", "model"], sort=True):
        base = g[g.system == "base"]
        for rm, s in g[g.system == "rgd"].groupby("rm", sort=True):
            cand = pd.concat([base.assign(rm=rm, param=0.0), s])
            r = _pick(cand[cand.half == "val"], cand[cand.half == "test"])
            if r is not None:
                rows.append(r.rename({"param": "w_selected"}))
    out = pd.DataFrame(rows).reset_index(drop=True)
    if len(out):
        out["w_selected"] = out["w_selected"].astype(float)
        out["system"] = "rgd"
    return out


def rm_vs_rouge(summary: pd.DataFrame, rm_table: pd.DataFrame, rm_col: str = "rm") -> pd.DataFrame:
    """RGD ROUGE-1 of each reward model joined with its RM accuracy (``rm_table``): at its val-selected w
    (:func:`select_rgd_w`) when the results have halves, else at its best w on the same queries.

    ``rm_table`` needs the column ``rm_col`` naming the models as in the ``rm`` column of the results.
    Feed the result to :func:`lib.metrics.tau_table` (x = RM accuracy, y = rouge1): the decoupling.
    """
    if "half" in summary:
        best = select_rgd_w(summary)
    else:
        r = summary[summary.system == "rgd"]
        best = (r.sort_values(["rouge1", "param"], ascending=[False, True], kind="stable")
                .groupby(["task", "model", "rm"], sort=True).head(1))
    missing = set(best.rm) - set(rm_table[rm_col])
    if missing:
        raise KeyError(f"rm_vs_rouge: reward models {sorted(missing)[:5]} have no row in the RM table")
    return best.merge(rm_table, left_on=["task", "rm"] if "task" in rm_table else ["rm"],
                      right_on=["task", rm_col] if "task" in rm_table else [rm_col], how="left")


# --- reward models of notebook 02 --------------------------------------------------------------------
RM_INDEX_COLUMNS = ("task", "method", "backbone", "seed", "prefix_train", "dir")


def rm_name(row) -> str:
    """Short readable id of a trained reward model: ``method[+prefix]/backbone/s<seed>``."""
    prefix = str(row["prefix_train"]).lower() in ("true", "1", "1.0")
    return f"{row['method']}{'+prefix' if prefix else ''}/{row['backbone']}/s{row['seed']}"


def read_rm_index(index_csv) -> pd.DataFrame:
    """notebook 02's index of reward models, with ``rm`` (a readable id) and ``path`` (resolved dir)."""
    from .config import data_root

    index_csv = Path(index_csv)
    idx = read_table(index_csv, RM_INDEX_COLUMNS, "notebook 02 (make rms)")
    idx["rm"] = [rm_name(r) for _, r in idx.iterrows()]
    dup = idx[idx.duplicated(["task", "rm"], keep=False)]
    if len(dup):
        raise ValueError(f"{index_csv}: reward models with the same (task, method, backbone, seed, prefix): "
                         f"{dup[['task', 'rm']].values.tolist()[:4]}")
    if "degenerate" not in idx:
        idx["degenerate"] = ""
    idx["degenerate"] = idx["degenerate"].fillna("").astype(str)
    paths_ = []
    for i, d in enumerate(idx["dir"]):
        if not isinstance(d, str) or not d:  # a model notebook 02 skipped (e.g. diverged): no files, a reason
            if not idx["degenerate"].iloc[i]:
                raise ValueError(f"{index_csv}: row {i}: no reward model dir and no reason in 'degenerate'")
            paths_.append(None)
            continue
        cands = [Path(d)] if Path(d).is_absolute() else [index_csv.parent / d, data_root() / d]
        found = next((c for c in cands if c.exists()), None)
        if found is None:
            raise FileNotFoundError(f"{index_csv}: row {i}: reward model dir {d!r} not found (tried {cands})")
        paths_.append(found)
    idx["path"] = paths_
    return idx


def select_rms(index: pd.DataFrame, task: str, methods=None, backbones=None, seeds=None,
               prefix_train=None, policy: str | None = None) -> pd.DataFrame:
    """Rows of the RM index for one task, optionally filtered (None keeps everything).

    ``backbones="policy"`` keeps the reward models whose frozen backbone is ``policy`` itself: RGD then
    takes path a (the policy's forward of the k candidates also yields their rewards), the cheap
    choice when each policy size has reward heads on its own hidden states (smoke profile).
    """
    if isinstance(backbones, str):
        if backbones != "policy":
            raise ValueError(f"backbones must be None, a list of backbone names or 'policy', not {backbones!r}")
        if policy is None:
            raise ValueError("backbones='policy' needs the policy's name (policy=...)")
        backbones = [policy]
    s = index[(index.task == task) & index.path.notna()] if "path" in index else index[index.task == task]
    if methods is not None:
        s = s[s.method.isin(methods)]
    if backbones is not None:
        s = s[s.backbone.isin(backbones)]
    if seeds is not None:
        s = s[s.seed.isin(seeds)]
    if prefix_train is not None:
        s = s[s.prefix_train.astype(str).str.lower().isin(["true", "1"] if prefix_train else ["false", "0"])]
    return s.sort_values("rm").reset_index(drop=True)


def load_task_rms(selection: pd.DataFrame, pairs: list[dict], policy_name: str | None = None, policy=None,
                  tok=None, cache_dir=None, calibrated: bool = True) -> dict:
    """Load the selected reward models and adapt each to the unseen users of ``pairs`` (deployment).

    Unseen users get the few-shot adaptation of notebook 02 (their *train* pairs only, so their test
    pairs and held-out queries stay unseen). Featurizers are built once per backbone and attached to
    the models (RGD reuses them); the policy's own model serves as the featurizer of reward models
    whose backbone is the policy. ``calibrated``: decode with calibrated rewards (default) or raw ones
    (see ``RewardModel.guidance``). Returns ``{rm name: reward model}``.
    """
    from .features import LMFeaturizer, featurizer
    from .rewards import PairFeatures, adapt_unseen, load_reward_model

    unseen_train = [p for p in pairs if p["user_group"] == "unseen" and p["split"] == "train"]
    feats, pfs, out = {}, {}, {}
    for r in selection.itertuples():
        rm = load_reward_model(r.path, calibrated=calibrated)
        if not rm.finetuned:
            b = rm.backbone
            if b not in feats:
                feats[b] = (LMFeaturizer(policy, tok, name=policy_name) if policy is not None and b == policy_name
                            else featurizer(b))
            rm.featurizer = feats[b]
            if any(p["user"] not in rm.users for p in unseen_train):
                if b not in pfs:
                    pfs[b] = PairFeatures.compute(feats[b], unseen_train, cache_dir=cache_dir, progress=False)
                adapt_unseen(rm, unseen_train, features=pfs[b])
        elif any(p["user"] not in rm.users for p in unseen_train):
            adapt_unseen(rm, unseen_train)  # fine-tuned backbone: its own LoRA featurizer
        out[r.rm] = rm
    return out


PA_COLUMNS = ("task", "policy", "rm", "method", "user_group", "definition", "normalise", "w", "policy_acc", "rm_acc",
              "base_acc")


def load_dataset_pairs(P, name: str) -> list[dict]:
    """Preference pairs of one dataset of notebook 02: a Pref-LaMP task (notebook 01) or a multi-user
    preference set (TL;DR / PRISM / PersonalLLM), which notebook 02 stores under ``P.prefsets/<name>``."""
    from .io import read_jsonl
    from .preflamp import load_pairs

    if (P.preflamp / name / "pairs.jsonl").exists():
        return load_pairs(P.preflamp, name)
    f = P.prefsets / name / "pairs.jsonl"
    if f.exists():
        return read_jsonl(f)
    raise FileNotFoundError(f"no pairs of dataset {name!r}: neither {P.preflamp / name / 'pairs.jsonl'} (notebook 01) "
                            f"nor {f} (notebook 02, pref_datasets)")


def test_pairs(pairs: list[dict], max_per_group: int | None = None) -> list[dict]:
    """The test pairs of seen and unseen users, sorted by id, at most ``max_per_group`` of each group."""
    out = []
    for g in ("seen", "unseen"):
        ps = sorted((p for p in pairs if p["split"] == "test" and p["user_group"] == g), key=lambda p: p["pair_id"])
        out += ps[:max_per_group] if max_per_group else ps
    return out


def read_policy_accuracy(path) -> pd.DataFrame:
    """notebook 04's table (one row per reward model, user group, definition, normalisation and w)."""
    df = read_table(path, PA_COLUMNS, "notebook 04 (make policy-accuracy)")
    df["normalise"] = df["normalise"].astype(str).str.lower().isin(["true", "1"])
    return df


# --- which selection metric predicts behaviour? -------------------------------------------------------
UPSTREAM = {"rm_acc": "RM accuracy", "policy_acc_cumulative": "policy accuracy (cumulative)",
            "policy_acc_rgd_likelihood": "policy accuracy (rgd_likelihood)", "reward_margin": "calibrated reward margin"}


def upstream_metrics(rm_pairs: pd.DataFrame, policy_at_selected: pd.DataFrame, user_group: str = "seen") -> pd.DataFrame:
    """Per (task, policy, rm): every candidate selection metric on the test half of notebook 04's pairs:
    RM accuracy, policy accuracy of each definition at the validation-selected w (raw scores), and the mean
    calibrated reward margin r(chosen) - r(rejected)."""
    r = rm_pairs[(rm_pairs.half == "test") & (rm_pairs.user_group == user_group)]
    out = r.groupby(["task", "policy", "rm"], sort=True).agg(rm_acc=("rm_correct", "mean"),
                                                             reward_margin=("reward_margin", "mean"))
    p = policy_at_selected[(policy_at_selected.half == "test") & (policy_at_selected.user_group == user_group)
                           & (~policy_at_selected.normalise.astype(bool))]
    pa = p.groupby(["task", "policy", "rm", "definition"], sort=True).correct.mean().unstack("definition")
    pa.columns = [f"policy_acc_{c}" for c in pa.columns]
    return out.join(pa, how="left").reset_index()


def selection_table(upstream: pd.DataFrame, rgd_selected: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Kendall tau-b of each upstream selection metric with the downstream RGD ROUGE-1 (test queries, each
    reward model at its val-selected w, :func:`select_rgd_w`) across the reward models of a task and policy,
    with a bootstrap CI over reward models. The paper's question asked directly: which number, measured
    before deployment, ranks reward models the way their generations rank?"""
    df = upstream.merge(rgd_selected[["task", "model", "rm", "rouge1"]].rename(columns={"model": "policy"}),
                        on=["task", "policy", "rm"], how="inner")
    rows = []
    for col, label in UPSTREAM.items():
        if col in df:
            t = metrics.tau_table(df, col, "rouge1", by=["task", "policy"], n_boot=n_boot, seed=seed)
            rows.append(t.assign(metric=label))
    if not rows:
        raise ValueError("selection_table: no upstream metric column in the input")
    out = pd.concat(rows, ignore_index=True)
    return out[["task", "policy", "metric", "n", "tau", "ci_lo", "ci_hi", "p"]]


# --- notebook 05 as functions (the notebook and scripts/shard_generate.py call them) ----------------
GENERATION_PARAMS = ("seed", "tasks", "queries_per_user", "icl_ks", "icl_retriever", "icl_max_tokens", "rgd_ws",
                     "calibrated", "rgd_k", "rm_methods", "rm_backbones", "rm_seeds", "rm_prefix_train",
                     "unknown_users", "max_new_tokens", "batch_size", "rgd_batch_size", "user_block")


def _check_params(params: dict) -> None:
    missing = [k for k in GENERATION_PARAMS if k not in params]
    if missing:
        raise KeyError(f"generation parameters {missing} missing (notebook 05's parameters cell declares them)")


def generation_queries(P, params: dict) -> list[dict]:
    """Notebook 05's queries: the held-out Pref-LaMP queries of ``params["tasks"]``, the first
    ``params["queries_per_user"]`` of each user (:func:`limit_queries`)."""
    from .preflamp import load_queries

    _check_params(params)
    queries = [q for q in load_queries(P.preflamp) if q["task"] in params["tasks"]]
    return limit_queries(queries, params["queries_per_user"])


def generate_policy_rows(P, policy: str, model, tok, rm_index: pd.DataFrame, params: dict, queries=None,
                         progress: bool = True) -> pd.DataFrame:
    """Notebook 05's rows of one policy: for every task, its reward models selected from ``rm_index``
    (:func:`read_rm_index`, named by its unique ``rm`` column), loaded and adapted to unseen users
    (:func:`load_task_rms`), then :func:`evaluate` of base / ICL / RGD with ``params`` (the keys of
    notebook 05's parameters cell, :data:`GENERATION_PARAMS`). ``queries``: default
    :func:`generation_queries`; a subset of whole users gives exactly those users' rows (sharding).
    Rows sorted by :func:`sort_rows`; generations cached under ``P.cache / "generation"``."""
    from .preflamp import load_pairs

    _check_params(params)
    p = params
    queries = generation_queries(P, p) if queries is None else queries
    rgd_fn, rgd_tag = rgd_adapter(policy, k=p["rgd_k"])
    frames = []
    for task in p["tasks"]:
        sel = select_rms(rm_index, task, p["rm_methods"], p["rm_backbones"], p["rm_seeds"], p["rm_prefix_train"],
                         policy=policy)
        rms = load_task_rms(sel, load_pairs(P.preflamp, task), policy, model, tok, P.cache / "features",
                            calibrated=p["calibrated"])
        if progress:
            print(f"{policy} / {task}: {len(rms)} reward models x {len(p['rgd_ws'])} w, ICL k={p['icl_ks']}")
        frames.append(evaluate(
            [q for q in queries if q["task"] == task], model, tok, policy, icl_ks=p["icl_ks"],
            icl_retriever=p["icl_retriever"], icl_max_tokens=p["icl_max_tokens"], rms=rms, ws=p["rgd_ws"],
            rgd_fn=rgd_fn, rgd_tag=rgd_tag, max_new_tokens=p["max_new_tokens"], batch_size=p["batch_size"],
            rgd_batch_size=p["rgd_batch_size"], cache_dir=P.cache / "generation", seed=p["seed"],
            unknown_users=p["unknown_users"], user_block=p["user_block"], progress=progress))
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
