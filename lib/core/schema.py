"""The artifacts stages hand to each other: their columns and their readers, in one place that producer and
consumer both import (each stage imports only downhill, so the vocabulary lives in core).

=====================================  ======================  =============================================
artifact                               written by              read with
=====================================  ======================  =============================================
``rms/index.csv``                      notebook 02             :func:`lib.rewards.read_rm_index` (:data:`RM_INDEX_COLUMNS`)
``rgd/decodes.csv``                    notebook 03             :func:`read_decodes`
``eval/policy_accuracy.csv``           notebook 04             :func:`read_policy_accuracy` (:data:`PA_COLUMNS`)
``eval/generations.csv``               notebook 05             :func:`read_results` (:data:`ROW_COLUMNS`)
=====================================  ======================  =============================================
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .io import atomic_path

RM_INDEX_COLUMNS = ("task", "method", "backbone", "seed", "prefix_train", "dir")

PA_COLUMNS = ("task", "policy", "rm", "method", "user_group", "definition", "normalise", "w", "policy_acc", "rm_acc",
              "base_acc")

ROW_COLUMNS = ["task", "user", "user_group", "query_id", "system", "param", "rm", "model", "generation",
               "reference", "rouge1", "rougeL", "follows_rule", "n_examples"]


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


def write_results(df: pd.DataFrame, path) -> Path:
    """Rows to CSV atomically (the artifact notebooks 05 -> 06 share)."""
    with atomic_path(path, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False)
    return Path(path)


def read_results(path) -> pd.DataFrame:
    """notebook 05's ``generations.csv`` (one row per query and system setting, :data:`ROW_COLUMNS`)."""
    df = read_table(path, ROW_COLUMNS, "notebook 05 (make generation)",
                    dtype={"user": str, "query_id": str, "generation": str, "reference": str})
    df["generation"] = df["generation"].fillna("")
    return df


def read_policy_accuracy(path) -> pd.DataFrame:
    """notebook 04's ``policy_accuracy.csv`` (one row per reward model, user group, definition, normalisation and w)."""
    df = read_table(path, PA_COLUMNS, "notebook 04 (make policy-accuracy)")
    df["normalise"] = df["normalise"].astype(str).str.lower().isin(["true", "1"])
    return df


def read_decodes(path) -> pd.DataFrame:
    """rgd/decodes.csv as written (text as text, floats read back bit for bit)."""
    text = {c: str for c in ("policy", "method", "query_id", "generation", "reference", "task", "user")}
    return pd.read_csv(path, dtype=text, keep_default_na=False, float_precision="round_trip")
