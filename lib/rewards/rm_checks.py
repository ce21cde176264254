"""Notebook 02 around the reward-model zoo: pair counts, the feature pass, the accuracy artifact, the training
time table and the reload / swapped-user check of the saved models (training itself: :mod:`lib.rewards`)."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from ..core.io import write_text

ACCURACY_FILE = "accuracy.csv"  # next to rms/index.csv: RM accuracy per configuration, with its 95% CIs


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
