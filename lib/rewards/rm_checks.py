"""Notebook 02 around the reward-model zoo: the datasets it trains on (:func:`load_datasets`), pair counts, the
feature pass, the LoRA zoos (:func:`train_lora_zoos`), the index and accuracy artifacts (:func:`write_index`,
:func:`write_accuracy`, :func:`accuracy_headline`), the training time table and the reload / swapped-user check of
the saved models (training itself: :mod:`lib.rewards`)."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from ..core.io import write_json, write_jsonl, write_text

ACCURACY_FILE = "accuracy.csv"  # next to rms/index.csv: RM accuracy per configuration, with its 95% CIs


def load_datasets(P, tasks, synthetic_prefsets=(), pref_datasets=None, seed: int = 0) -> dict[str, list[dict]]:
    """``{dataset: pair records}`` of notebook 02: the multi-user preference sets, then the Pref-LaMP ``tasks``.

    ``synthetic_prefsets`` (smoke) are first written from ``seed`` under ``P.raw/synthetic_prefsets`` in the
    published layouts and read by the real loaders; ``pref_datasets`` (name -> :func:`lib.data.prefdata.load`
    keyword arguments, a relative ``path`` read against the data root) are the real sets and win over a synthetic
    one of the same name. Each set's pairs go to ``P.prefsets/<name>/pairs.jsonl`` (notebook 04 scores the same
    pairs) with a manifest of the records and users the loader skipped, by cause."""
    from ..core import config
    from ..data import prefdata, preflamp, synthetic_prefs

    sets = dict(pref_datasets or {})
    if synthetic_prefsets:
        root = P.raw / "synthetic_prefsets"
        synthetic_prefs.write_synthetic_prefsets(root, names=tuple(synthetic_prefsets), seed=seed)
        sets = {**synthetic_prefs.pref_datasets(root, names=tuple(synthetic_prefsets)), **sets}
    data = {}
    for name, kw in sets.items():
        drops = {}  # records and users the loader skipped, by cause (it warns once with them)
        data[name] = prefdata.load(name, drops=drops, **config.resolve_path(kw, P.root))
        write_jsonl(P.prefsets / name / "pairs.jsonl", data[name])
        write_json(P.prefsets / name / "manifest.json", {"dataset": name, "pairs": len(data[name]), "drops": drops})
    return data | {t: preflamp.load_pairs(P.preflamp, t) for t in tasks}


def train_lora_zoos(data: dict[str, list[dict]], backbones, out_root, batch_size: int = 16, **zoo_kw):
    """The paper profile's fine-tuned reward models: for each causal LM of ``backbones`` and each dataset of ``data``,
    :func:`lib.rewards.train_zoo` with ``finetune="lora"`` (LoRA adapters trained with the head; no prefix variant).
    ``zoo_kw``: ``methods``, ``seeds``, ``hparams``, ``arch``, ``adapt_kw``, ``n_resamples``. Returns (index rows,
    per-pair correctness) like :func:`lib.rewards.train_zoos`; no backbone, no rows."""
    from .. import rewards
    from . import features

    rows, correct = [], {}
    for bb in backbones:
        fz = features.featurizer(bb, batch_size=batch_size)
        for t, recs in data.items():
            r, c = rewards.train_zoo(recs, fz, t, out_root, prefix_options=[False], finetune="lora", **zoo_kw)
            rows += r
            correct |= c
    return rows, correct


def write_index(rows: list[dict], rms_root) -> pd.DataFrame:
    """The RM index (one row per reward model, :func:`lib.rewards.train_zoo`'s rows) as ``rms_root/index.csv``, the
    file later notebooks select from; returns it. No rows is an error: an empty index would pass for a trained zoo."""
    if not rows:
        raise ValueError(f"{Path(rms_root) / 'index.csv'}: no reward model was trained (no dataset, backbone or method)")
    index = pd.DataFrame(rows)
    write_text(Path(rms_root) / "index.csv", index.to_csv(index=False))
    return index


def accuracy_headline(table: pd.DataFrame) -> pd.DataFrame:
    """Notebook 02's kept headline: mean RM accuracy per dataset, user group (rows) and method (columns) over the
    backbones and training variants of :func:`lib.rewards.accuracy_table`, plus ``cells`` (configurations averaged)
    and ``flagged`` (seeds flagged degenerate). Small enough to print whole, and every cell of the table moves it."""
    long = table.melt(id_vars=["task", "method", "degenerate"], value_vars=["rm_acc_seen", "rm_acc_unseen"],
                      var_name="user_group", value_name="rm_acc")
    long["user_group"] = long.user_group.str.removeprefix("rm_acc_")
    keys = ["task", "user_group"]
    wide = long.pivot_table(index=keys, columns="method", values="rm_acc", aggfunc="mean", dropna=False, sort=True)
    extra = long.groupby(keys, sort=True).agg(cells=("rm_acc", "size"), flagged=("degenerate", "sum"))
    out = wide.join(extra).reset_index().rename(columns={"task": "dataset"})
    out.columns.name = None
    return out


def pair_counts(data: dict[str, list[dict]]) -> pd.DataFrame:
    """Pairs and users per dataset, user group (rows) and split (columns) of ``{dataset: pair records}``."""
    counts = pd.DataFrame([r | {"dataset": t} for t, recs in data.items() for r in recs])
    return (counts.groupby(["dataset", "user_group", "split"])
            .agg(pairs=("pair_id", "size"), users=("user", "nunique")).unstack("split"))


def compute_features(backbones: list[str], data: dict[str, list[dict]], n_prefix: int, cache_dir, seed: int = 0,
                     batch_size: int = 16) -> tuple[dict, pd.DataFrame]:
    """``({(dataset, backbone): PairFeatures}, timing table)``: every dataset through every frozen backbone
    (one featurizer loaded at a time), with ``n_prefix`` prefixes per response, cached under ``cache_dir``."""
    from .. import rewards
    from . import features

    feats, seconds = {}, []
    for bb in backbones:
        fz = features.featurizer(bb, batch_size=batch_size)
        for t, recs in data.items():
            t0 = time.time()
            feats[t, bb] = rewards.PairFeatures.compute(fz, recs, n_prefix=n_prefix, cache_dir=cache_dir, seed=seed)
            seconds.append({"dataset": t, "backbone": bb, "pairs": len(recs), "dim": fz.dim,
                            "seconds (or cache read)": round(time.time() - t0, 1)})
        del fz
    return feats, pd.DataFrame(seconds)


def write_accuracy(table: pd.DataFrame, rms_root) -> Path:
    """Save the RM accuracy table (:func:`lib.rewards.accuracy_table`, with CIs) as ``rms_root/accuracy.csv``."""
    return write_text(Path(rms_root) / ACCURACY_FILE, table.to_csv(index=False))


def read_accuracy(rms_root) -> pd.DataFrame:
    """The table of :func:`write_accuracy`, floats read back bit for bit."""
    return pd.read_csv(Path(rms_root) / ACCURACY_FILE, float_precision="round_trip")


def train_time_table(index: pd.DataFrame) -> pd.DataFrame:
    """Mean and max training seconds per method (rows) and backbone (columns ``"mean (<backbone>)"`` ...)."""
    times = index.groupby(["method", "backbone"]).train_seconds.agg(["mean", "max"]).unstack("backbone").round(2)
    times.columns = [f"{a} ({b})" for a, b in times.columns]
    return times.reset_index()


def swap_users(records: list[dict]) -> list[dict]:
    """The records with each *seen* user's id replaced by the next seen user's (sorted ids, cyclic); unseen
    users' records unchanged. A personalised reward model scores a swapped pair as another user's."""
    seen = sorted({r["user"] for r in records if r["user_group"] == "seen"})
    other = dict(zip(seen, seen[1:] + seen[:1]))
    return [dict(r, user=other[r["user"]]) if r["user_group"] == "seen" else r for r in records]


def reload_check(index: pd.DataFrame, rms_root, records: list[dict], features, task: str, backbone: str,
                 seed: int = 0) -> pd.DataFrame:
    """Per method (``task``, ``backbone``, ``seed``, full responses, saved models only): the seen-user RM
    accuracy of the index, after reloading the model, and with other users' ids (:func:`swap_users`).
    Raises ``AssertionError`` when a reloaded model scores differently from the index."""
    from .. import rewards

    swapped = swap_users(records)
    ok = index.dir.notna() & (index.dir != "")  # skipped (diverged) models have no files
    sel = index[ok & (index.task == task) & (index.backbone == backbone) & (index.seed == seed) & ~index.prefix_train]
    checks = []
    for r in sel.itertuples():
        rm = rewards.load_reward_model(Path(rms_root) / r.dir)
        acc = rewards.rm_accuracy(rm, records, features, n_resamples=100)
        acc_sw = rewards.rm_accuracy(rm, swapped, features, n_resamples=100)
        checks.append({"method": r.method, "rm_acc_seen (index)": r.rm_acc_seen, "after reload": acc["rm_acc_seen"],
                       "other user's id": acc_sw["rm_acc_seen"]})
    checks = pd.DataFrame(checks)
    if not (checks["after reload"] == checks["rm_acc_seen (index)"]).all():
        raise AssertionError(f"reloaded models of {task}/{backbone} score differently from {rms_root}/index.csv")
    return checks


# ------------------------------------------------------------------ what the labels allow (real preference sets)
def _words(text: str) -> int:
    return len(str(text).split())


def label_baselines(records: list[dict], dataset: str) -> pd.DataFrame:
    """Accuracy on the *test* pairs of two rules that know nothing of the user, per user group: the reward models'
    floor on real labels.

    * ``length_acc``: the longer response (words) wins; a tie counts 0.5 (TL;DR: longer summaries win often).
    * ``position_acc``: the position the chosen response was shown in most often among the *train* pairs always
      wins; needs the ``position`` field (TL;DR records carry it; NaN for datasets without one).
    """
    df = pd.DataFrame(records)
    if not len(df):
        raise ValueError(f"{dataset}: no pairs to compute label baselines on")
    longer = df.chosen.map(_words) - df.rejected.map(_words)
    df["length_ok"] = (longer > 0).astype(float).where(longer != 0, 0.5)
    has_pos = "position" in df and df.position.notna().all()
    if has_pos:
        train_pos = df[df.split == "train"].position.astype(int)
        majority = int(train_pos.mode().min()) if len(train_pos) else 0
        df["position_ok"] = (df.position.astype(int) == majority).astype(float)
    test = df[df.split == "test"]
    rows = []
    for group, g in test.groupby("user_group"):
        rows.append({"dataset": dataset, "user_group": group, "n_pairs": len(g), "n_users": g.user.nunique(),
                     "length_acc": g.length_ok.mean(),
                     "length_ties": int((longer.loc[g.index] == 0).sum()),
                     "position_acc": g.position_ok.mean() if has_pos else float("nan"),
                     "position_rule": f"chosen shown at {majority}" if has_pos else "no position field"})
    return pd.DataFrame(rows)


def worker_agreement(records: list[dict], dataset: str, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """How often two users who labelled the same comparison (same prompt and the same two responses, any split)
    agree: the ceiling of any per-user model on labels shared across users. Each comparison labelled by
    ``m >= 2`` users contributes its share of agreeing label pairs (of ``m (m - 1) / 2``); the agreement is the mean
    over comparisons, each weighted equally (one comparison labelled by 11 workers must not count 55 times), with a
    95% percentile bootstrap CI over comparisons (scipy). No comparison labelled twice: ``comparisons`` 0, NaN."""
    from itertools import combinations

    import numpy as np
    from scipy.stats import bootstrap

    groups: dict = {}
    for r in records:
        groups.setdefault((r["prompt"], frozenset((r["chosen"], r["rejected"]))), {})[r["user"]] = r["chosen"]
    shares = []
    for by_user in groups.values():
        if len(by_user) >= 2:
            same = [a == b for a, b in combinations(list(by_user.values()), 2)]
            shares.append(float(np.mean(same)))
    row = {"dataset": dataset, "comparisons": len(shares),
           "labels": sum(len(u) for u in groups.values() if len(u) >= 2),
           "agreement": float(np.mean(shares)) if shares else float("nan"), "ci_lo": float("nan"), "ci_hi": float("nan")}
    if len(shares) >= 2 and len(set(shares)) > 1:
        ci = bootstrap((np.asarray(shares),), np.mean, n_resamples=n_resamples, method="percentile",
                       random_state=np.random.default_rng(seed)).confidence_interval
        row |= {"ci_lo": float(ci.low), "ci_hi": float(ci.high)}
    return pd.DataFrame([row])


def moved_table(index: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and method: how many reward models trained normally and how many are flagged degenerate
    (never left their initial weights, constant rewards, NaN: :func:`lib.rewards.fit`), with the reasons."""
    g = index.assign(ok=index.degenerate.fillna("").eq("")).groupby(["task", "method"])
    return g.agg(models=("ok", "size"), trained=("ok", "sum"),
                 flagged=("degenerate", lambda s: "; ".join(sorted({x for x in s.fillna("") if x})))).reset_index()
