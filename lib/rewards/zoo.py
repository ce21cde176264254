"""The reward-model zoo of notebook 02 and its index: RM accuracy of a model on test pairs (seen users,
and unseen users after few-shot adaptation) with bootstrap CIs (:func:`rm_accuracy`), training every
(method, seed, prefix_train) of a task (:func:`train_zoo`, :func:`train_zoos`), the seed-averaged table
(:func:`accuracy_table`), and reading / selecting / loading the saved models back (:func:`read_rm_index`,
:func:`select_rms`, :func:`load_task_rms`)."""
from __future__ import annotations

import copy
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..core.params import RULES, check_values, count
from ..core.progress import bar
from ..core.schema import RM_INDEX_COLUMNS, read_table
from ..core.stats import bootstrap_ci
from .base import RewardModel
from .fit import check_methods, train
from .heads import METHODS, load_reward_model
from .pairs import PairFeatures


# --- RM accuracy -------------------------------------------------------------------------------------
def accuracy_ci(correct, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap CI of an accuracy over pairs (per-pair correctness ``correct``): NaN for fewer
    than 2 pairs, the accuracy itself when all pairs agree, else :func:`lib.core.stats.bootstrap_ci` with scipy's
    quantiles (``scipy.stats.bootstrap``'s numbers, which the RM accuracies have always reported)."""
    c = np.asarray(correct, dtype=float)
    if len(c) < 2:
        return float("nan"), float("nan")
    if np.all(c == c[0]):
        return float(c[0]), float(c[0])
    return bootstrap_ci(c, n_boot=n_resamples, seed=seed, alpha=1 - 0.95, quantile="scipy")


def pair_correct(rm: RewardModel, records, features=None) -> np.ndarray:
    """1 where r(chosen) > r(rejected) for the pair's user, 0.5 on a tie, else 0."""
    if not records:
        return np.zeros(0)
    xc, xr = rm._pair_tensors(records, features)
    u = rm.user_index([r["user"] for r in records]).to(rm.mu.device)
    with torch.no_grad():
        d = (rm.head(xc, u) - rm.head(xr, u)).cpu().numpy()
    return (d > 0) + 0.5 * (d == 0)


def adapt_unseen(rm: RewardModel, records, features=None, **adapt_kw) -> RewardModel:
    """Adapt ``rm`` in place to every unseen user of ``records`` it does not know, on their train pairs."""
    recs = [r for r in records if r["user_group"] == "unseen" and r["split"] == "train" and r["user"] not in rm.users]
    if recs and not (rm.method == "bt"):
        rm.adapt_users(recs, features, **adapt_kw)
    elif recs:
        rm.users += sorted({r["user"] for r in recs})
    return rm


def rm_accuracy(rm: RewardModel, records, features=None, n_resamples: int = 2000, seed: int = 0,
                return_pairs: bool = False, **adapt_kw) -> dict:
    """RM accuracy on the test pairs of seen users and of unseen users, with 95% bootstrap CIs.

    Unseen users the model does not know yet are adapted (on a copy) from their train pairs, as in
    deployment: few-shot adaptation, then evaluation on their test pairs. ``return_pairs`` adds the
    per-pair correctness arrays (``correct_seen``, ``correct_unseen``, ordered like ``records``).
    """
    test = [r for r in records if r["split"] == "test"]
    unknown = {r["user"] for r in records if r["user_group"] == "unseen" and r["user"] not in rm.users}
    model = rm
    if unknown and rm.method != "bt":
        feat, rm._featurizer = rm._featurizer, None  # do not deep-copy a language model
        try:
            model = copy.deepcopy(rm)
        finally:
            rm._featurizer = feat
        model._featurizer = feat
        adapt_unseen(model, records, features, **adapt_kw)
    out = {}
    for group in ("seen", "unseen"):
        recs = [r for r in test if r["user_group"] == group]
        c = pair_correct(model, recs, features)
        lo, hi = accuracy_ci(c, n_resamples, seed)
        out |= {f"rm_acc_{group}": float(c.mean()) if len(c) else float("nan"), f"ci_lo_{group}": lo,
                f"ci_hi_{group}": hi, f"n_{group}": int(len(c))}
        if return_pairs:
            out[f"correct_{group}"] = c
    return out


# ======================================================================================
# the model zoo of notebook 02
# ======================================================================================


# --- the model zoo of notebook 02 ---------------------------------------------------------------
def model_name(method: str, backbone: str, seed: int, prefix_train: bool) -> str:
    """Directory name of a trained model under its task: ``<method>-<backbone>-<seed>-<full|prefix>``."""
    return f"{method}-{backbone}-{seed}-{'prefix' if prefix_train else 'full'}"


def train_zoo(records, features, task: str, out_root, methods=tuple(METHODS), seeds=(0,), prefix_options=(False,),
              hparams: dict | None = None, arch: dict | None = None, adapt_kw: dict | None = None,
              n_resamples: int = 2000, finetune: str | None = None, progress: bool = True):
    """Train every (method, seed, prefix_train) on one task and one backbone's features.

    Each model is adapted to the task's unseen users (few-shot, their train pairs), evaluated with
    :func:`rm_accuracy` and saved under ``out_root/<task>/<method>-<backbone>-<seed>-<full|prefix>``.
    ``features``: :class:`PairFeatures` of all ``records`` or, with ``finetune="lora"``, a featurizer.
    ``hparams`` go to :func:`train`; ``arch`` maps a method to its architecture options (e.g.
    ``{"lore": {"rank": 8}}``); ``adapt_kw`` go to :meth:`RewardModel.adapt_users`.
    Returns (index rows, per-pair correctness ``{(task, backbone, method, seed, prefix): {"seen": [...],
    "unseen": [...]}}``, the input of :func:`accuracy_table`).

    Index columns besides the accuracies: ``val_acc``, ``best_epoch``, ``val_rule``, ``n_val``, ``lr`` (the
    learning rate used, after any divergence retries), ``degenerate`` (the reason, "" when fine) and
    ``train_seconds``. A model that still diverges after the retries is skipped with a warning: its
    row has ``degenerate = "diverged: ..."``, NaN accuracies, ``dir = ""``; nothing is saved and it has
    no per-pair correctness.
    """
    methods = check_methods(methods, arch)  # before any training: a typo fails at once
    lib_rules = RULES | {"n_resamples": count(1),  # the notebook asks >= 100; 0 epochs: an untrained, flagged model
                         "hparams": replace(RULES["hparams"], keys=RULES["hparams"].keys | {"epochs": count(0)})}
    check_values(f"train_zoo ({task})", lib_rules,
                 {"seeds": list(seeds), "prefix_train_options": list(prefix_options), "hparams": hparams or {},
                  "adapt": adapt_kw or {}, "n_resamples": n_resamples})
    hparams, arch, adapt_kw = dict(hparams or {}), dict(arch or {}), dict(adapt_kw or {})
    rows, correct = [], {}
    grid = [(m, s, p) for m in methods for s in seeds for p in prefix_options if not (finetune and p)]
    for method, seed, prefix in bar(grid, desc=f"reward models [{task}]", progress=progress):
        backbone = (features.backbone if isinstance(features, PairFeatures) else features.name) + \
            ("+lora" if finetune else "")
        name, t0 = model_name(method, backbone, seed, prefix), time.time()
        row = {"task": task, "method": method, "backbone": backbone, "seed": seed, "prefix_train": prefix}
        try:
            rm = train(method, records, features, seed=seed, prefix_train=prefix, finetune=finetune, progress=False,
                       task=task, **hparams, **arch.get(method, {}))
        except FloatingPointError as e:
            warnings.warn(f"reward model {task}/{name} skipped: {e}", stacklevel=2)
            nan = float("nan")
            rows.append(row | {"dir": "", **{f"{k}_{g}": nan for g in ("seen", "unseen") for k in ("rm_acc", "ci_lo", "ci_hi")},
                               "n_seen": 0, "n_unseen": 0, "val_acc": nan, "best_epoch": None, "val_rule": None,
                               "n_val": None, "lr": None, "degenerate": f"diverged: {e}",
                               "train_seconds": round(time.time() - t0, 3)})
            continue
        pf = features if finetune is None else PairFeatures.compute(rm.featurizer, records, progress=False)
        adapt_unseen(rm, records, pf, **adapt_kw)
        acc = rm_accuracy(rm, records, pf, n_resamples=n_resamples, seed=seed, return_pairs=True)
        correct[(task, backbone, method, seed, prefix)] = {"seen": acc.pop("correct_seen"),
                                                           "unseen": acc.pop("correct_unseen")}
        rm.metrics |= acc
        rm.save(Path(out_root) / task / name)
        m = rm.metrics
        rows.append(row | {"dir": f"{task}/{name}", **acc, "val_acc": m.get("val_acc"), "best_epoch": m.get("best_epoch"),
                           "val_rule": m.get("val_rule"), "n_val": m.get("n_val"), "lr": rm.train_hparams.get("lr"),
                           "degenerate": m.get("degenerate", ""), "train_seconds": m["train_seconds"]})
    return rows, correct


def train_zoos(jobs: list[dict], n_jobs: int = 1, progress: bool = True):
    """:func:`train_zoo` for each job (a dict of its keyword arguments), in ``n_jobs`` processes.

    Every model trains single-threaded from its own seed, so the models, the index rows (apart from
    wall-clock ``train_seconds``) and the per-pair correctness do not depend on ``n_jobs`` (tested):
    the heads are tiny, and two processes on two cores halve the zoo's wall time where two threads
    would only synchronise. Returns (index rows, per-pair correctness) in the order of ``jobs``.
    """
    if n_jobs == 1:
        torch.set_num_threads(1)
        results = [train_zoo(**job, progress=progress) for job in jobs]
    else:
        from joblib import Parallel, delayed

        gen = Parallel(n_jobs=n_jobs, return_as="generator")(delayed(_train_zoo_quiet)(job) for job in jobs)
        results = list(bar(gen, total=len(jobs), progress=progress, desc=f"reward-model zoos ({n_jobs} processes)"))
        for row in (r for rs, _ in results for r in rs if flagged(r["degenerate"])):  # workers' warnings are lost
            warnings.warn(f"reward model {row['method']} (backbone {row['backbone']}, task {row['task']}, seed "
                          f"{row['seed']}, prefix_train {row['prefix_train']}): {row['degenerate']}", stacklevel=2)
    rows, correct = [], {}
    for r, c in results:
        rows += r
        correct |= c
    return rows, correct


def _train_zoo_quiet(job: dict):
    torch.set_num_threads(1)
    with warnings.catch_warnings():  # train_zoos repeats the flagged rows' warnings in the parent
        warnings.simplefilter("ignore")
        return train_zoo(**job, progress=False)


def flagged(reason) -> bool:
    """Whether an index row's ``degenerate`` entry flags the model (a non-empty reason; CSV: NaN = "")."""
    return isinstance(reason, str) and reason != ""


def accuracy_table(index, correct, n_resamples: int = 2000, seed: int = 0):
    """One row per (task, method, backbone, prefix_train): RM accuracy averaged over its unflagged seeds
    (``seeds`` of them; ``degenerate`` = how many seeds were flagged or skipped, see the index for
    why; NaN accuracy when none is left), with a 95% bootstrap CI over test pairs of the seed-averaged
    per-pair correctness, and mean training time."""
    rows = []
    for key, g in index.groupby(["task", "method", "backbone", "prefix_train"], sort=False):
        bad = g["degenerate"].map(flagged) if "degenerate" in g else pd.Series(False, index=g.index)
        ok = g[~bad.astype(bool)]
        row = dict(zip(["task", "method", "backbone", "prefix_train"], key), seeds=len(ok), degenerate=int(bad.sum()))
        for group in ("seen", "unseen"):
            cs = [correct[(r.task, r.backbone, r.method, r.seed, r.prefix_train)][group] for r in ok.itertuples()]
            c = np.mean(cs, 0) if cs else np.zeros(0)
            lo, hi = accuracy_ci(c, n_resamples, seed)
            row |= {f"rm_acc_{group}": float(np.mean(c)) if np.size(c) else float("nan"), f"ci_lo_{group}": lo,
                    f"ci_hi_{group}": hi}
        row["train_seconds"] = float(g.train_seconds.mean())
        rows.append(row)
    return pd.DataFrame(rows)


# --- the RM index: notebook 02's reward models, read back for notebooks 03-05 ------------------------
def rm_name(row) -> str:
    """Short readable id of a trained reward model: ``method[+prefix]/backbone/s<seed>``."""
    prefix = str(row["prefix_train"]).lower() in ("true", "1", "1.0")
    return f"{row['method']}{'+prefix' if prefix else ''}/{row['backbone']}/s{row['seed']}"


def read_rm_index(index_csv) -> pd.DataFrame:
    """notebook 02's index of reward models, with ``rm`` (a readable id) and ``path`` (resolved dir)."""
    from ..core.config import data_root
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
