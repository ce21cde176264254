"""Your own pairs and queries for :mod:`lib.evaluation.own_rm`: read and checked, errors naming file, record, field.

Each reader takes

* a JSON-lines file (one record per line: your own, or notebook 01's ``preflamp/<task>/pairs.jsonl`` /
  ``queries.jsonl``);
* a Pref-LaMP build folder (``data/processed/<profile>/preflamp``: every task of it);
* a ``datasets`` folder written by ``save_to_disk`` (the ``pairs/`` and ``queries/`` of :mod:`lib.data.export`,
  or the export's root folder, which holds both).

``split`` (default ``"test"``) picks the split of a ``DatasetDict``; records that carry a ``split`` field (Pref-LaMP
pairs) are kept only with that value, records without one are all kept (your own file usually has none);
``split=None`` keeps everything. Records are returned as plain dicts, in file order.
"""
from __future__ import annotations

from pathlib import Path

PAIR_FIELDS = ("pair_id", "prompt", "chosen", "rejected", "user")
QUERY_FIELDS = ("query_id", "task", "user", "prompt", "reference")  # + "profile" (ICL only), "user_group", "rule"


def _sources(path, what: str, split: str | None) -> list[tuple[str, list[dict]]]:
    """``[(where, records)]`` of ``path`` (see the module docstring), one entry per file (a build: per task),
    filtered by ``split``; ``where`` names the file for the errors of the checks."""
    from ..core.io import read_jsonl

    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder (expected a JSONL file of {what} or a folder)")
    if path.is_dir() and (path / what / "dataset_dict.json").is_file():
        path = path / what  # the root of an export (lib/data/export.py): its pairs/ or queries/
    if path.is_file():
        found = [(str(path), read_jsonl(path))]
    elif (path / "manifest.json").is_file():  # a Pref-LaMP build: <task>/<what>.jsonl
        files = sorted(path.glob(f"*/{what}.jsonl"))
        if not files:
            raise FileNotFoundError(f"{path}: a manifest.json but no <task>/{what}.jsonl: not a Pref-LaMP build")
        found = [(str(f), read_jsonl(f)) for f in files]
    else:
        found = [(str(path), _dataset_records(path, split))]
    out = [(where, _in_split(where, recs, what, split)) for where, recs in found]
    if not any(recs for _, recs in out):
        raise ValueError(f"{path}: no {what}" + (f" with split {split!r}" if split else ""))
    return out


def _in_split(where: str, recs: list, what: str, split: str | None) -> list:
    """The records of ``split``: those whose ``split`` field has that value, and all without the field."""
    if split is None:
        return recs
    for i, r in enumerate(recs, 1):
        if isinstance(r, dict) and "split" in r and not isinstance(r["split"], str):
            raise ValueError(f"{where}: record {i}: field 'split' must be a string, not {r['split']!r}")
    kept = [r for r in recs if not isinstance(r, dict) or r.get("split", split) == split]
    if recs and not kept:
        found = sorted({r["split"] for r in recs})
        raise ValueError(f"{where}: no {what} with split {split!r} (splits there: {found}); pass split=None for all")
    return kept


def _dataset_records(folder: Path, split: str | None) -> list[dict]:
    """Rows of a ``save_to_disk`` folder: a ``Dataset``, or one split of a ``DatasetDict``."""
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(str(folder))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{folder}: neither a JSONL file, a Pref-LaMP build (manifest.json) nor a "
                                f"datasets save_to_disk folder ({e})") from None
    if isinstance(ds, DatasetDict):
        if split is None and len(ds) == 1:
            split = next(iter(ds))
        if split not in ds:
            raise KeyError(f"{folder}: a DatasetDict without the split {split!r} (splits: {sorted(ds)})")
        ds = ds[split]
    return ds.to_list()


def _check_fields(recs, where: str, fields, id_field: str, nonempty) -> list[dict]:
    """Every record an object with every field of ``fields`` as a string (``nonempty`` ones not blank)."""
    for i, r in enumerate(recs, 1):
        if not isinstance(r, dict):
            raise TypeError(f"{where}: record {i} is a {type(r).__name__}, not an object")
        missing = [f for f in fields if f not in r]
        if missing:
            raise KeyError(f"{where}: record {i} ({r.get(id_field, '?')!r}) has no field(s) {missing}")
        bad = [f for f in fields if not isinstance(r[f], str) or (f in nonempty and not r[f].strip())]
        if bad:
            raise ValueError(f"{where}: record {i} ({r[id_field]!r}): field(s) {bad} must be "
                             f"{'non-empty ' if set(bad) & set(nonempty) else ''}strings")
    return recs


def check_pairs(pairs, where: str = "pairs") -> list[dict]:
    """``pairs`` as a non-empty list of dicts with every field of :data:`PAIR_FIELDS` (strings, non-empty
    responses), or an error naming ``where``, the record (1-based) and the field."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError(f"{where}: no pairs")
    return _check_fields(pairs, where, PAIR_FIELDS, "pair_id", ("chosen", "rejected"))


def check_queries(queries, where: str = "queries", seen: dict | None = None) -> list[dict]:
    """``queries`` as a non-empty list of dicts with every field of :data:`QUERY_FIELDS` (strings; prompt and
    reference non-empty: a ROUGE against an empty gold means nothing) and unique ``query_id`` (``seen``: ids
    of other files, ``{query_id: "file record i"}``); an error names ``where``, the record (1-based) and the
    field. A missing ``profile`` (read by ICL only, which :mod:`lib.evaluation.own_rm` does not run) becomes
    ``[]`` in the returned copies."""
    queries = list(queries)
    if not queries:
        raise ValueError(f"{where}: no queries")
    _check_fields(queries, where, QUERY_FIELDS, "query_id", ("prompt", "reference"))
    seen = {} if seen is None else seen
    for i, q in enumerate(queries, 1):
        if q["query_id"] in seen:
            raise ValueError(f"{where}: record {i}: field 'query_id' {q['query_id']!r} repeats {seen[q['query_id']]}")
        seen[q["query_id"]] = f"{where} record {i}"
    return [{"profile": [], **q} for q in queries]


def read_pairs(path, split: str | None = "test") -> list[dict]:
    """The checked pairs of a JSONL file, Pref-LaMP build or exported ``pairs/`` dataset (module docstring)."""
    return [p for where, recs in _sources(path, "pairs", split) if recs for p in check_pairs(recs, where)]


def read_queries(path, split: str | None = "test") -> list[dict]:
    """The checked queries of a JSONL file, Pref-LaMP build or exported ``queries/`` dataset (module docstring)."""
    seen: dict = {}
    return [q for where, recs in _sources(path, "queries", split) if recs for q in check_queries(recs, where, seen)]
