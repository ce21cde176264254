"""Pref-LaMP as a Hugging Face dataset: ``datasets.DatasetDict`` folders and a data card.

    python -m lib.data.export --profile smoke --out DIR

:func:`export_preflamp` reads a Pref-LaMP build (notebook 01's ``<task>/pairs.jsonl``, ``<task>/queries.jsonl``
and ``manifest.json``, checked against the sha256 and counts the manifest records) and writes, atomically
(an error leaves no partial folder and an existing ``out_dir`` untouched):

* ``pairs/``: a ``DatasetDict`` (``save_to_disk``) with splits ``train`` and ``test``, every task together;
* ``queries/``: a ``DatasetDict`` with one split ``test`` (the users' held-out questions);
* ``manifest.json``: the build's manifest, as it was;
* ``README.md``: a data card (fields, splits, drop rules with this build's counts, license).

Read it back with ``datasets.load_from_disk(out_dir / "pairs")``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..core.io import atomic_dir, sha256_file, write_json, write_text
from . import preflamp

PAIR_FIELDS = {
    "pair_id": "`<task>/<user>/<source_id>`, unique",
    "task": "LaMP-4 (news headline), LaMP-5 (scholarly title) or LaMP-7 (tweet paraphrase)",
    "user": "the LaMP profile the pair comes from",
    "user_group": "`seen` (its train pairs train reward models) or `unseen` (few-shot adaptation only)",
    "split": "`train` or `test` (also the split of the DatasetDict)",
    "prompt": "the task's LaMP instruction applied to the profile item's source",
    "chosen": "the user's own output",
    "rejected": "a non-personalised output for the same prompt (the build's `rejected` setting)",
    "source_id": "the profile item",
}
QUERY_FIELDS = {
    "query_id": "the LaMP question id",
    "task": "LaMP task",
    "user": "the LaMP profile",
    "user_group": "`seen` or `unseen`",
    "prompt": "the LaMP input (cut to `max_query_chars`, start kept)",
    "reference": "the user's real output",
    "profile": "the user's profile items (`id`, `source`, `output`), for in-context learning",
    "rule": "synthetic corpus only: the user's planted writing rule (null on real LaMP)",
}
DROPS = {
    "users_skipped_small_profile": "users with fewer than `min_profile` profile items",
    "profile_items_skipped_empty": "profile items without an output (or, but for LaMP-7, a source)",
    "profile_items_skipped_duplicate_id": "profile items whose id an earlier item of the profile has",
    "pairs_dropped_identical": "pairs whose rejected is empty or equals the chosen",
    "pairs_dropped_leak": "LaMP-7 pairs whose paraphrase gives the tweet away",
    "users_dropped_too_few_pairs": "users left with fewer than 2 pairs",
    "pairs_dropped_with_users": "the pairs of those users",
    "queries_dropped_empty_gold": "queries whose gold output is empty",
    "queries_truncated": "queries cut to `max_query_chars` (kept, not dropped)",
}


def _features():
    """Explicit schemas, so an odd record is an error rather than a silently different column type."""
    from datasets import Features, List, Value

    s = Value("string")
    pairs = Features({k: s for k in PAIR_FIELDS})
    queries = Features({**{k: s for k in QUERY_FIELDS if k not in ("profile", "rule")},
                        "profile": List({"id": s, "source": s, "output": s}), "rule": s})
    return pairs, queries


def _checked_records(root: Path, manifest: dict, task: str, name: str, fields: dict, count_key: str) -> list[dict]:
    """The records of ``root/task/name``, checked against the manifest's sha256 and count and for their fields."""
    f = root / task / name
    want = manifest.get("files", {}).get(f"{task}/{name}")
    if want is None:
        raise ValueError(f"{root / 'manifest.json'}: no sha256 for {task}/{name} under 'files'")
    if not f.exists():
        raise FileNotFoundError(f"{f} missing, though {root / 'manifest.json'} lists it")
    if sha256_file(f) != want:
        raise ValueError(f"{f}: sha256 differs from {root / 'manifest.json'} (edited or truncated since the build?)")
    records = preflamp.load_pairs(root, task) if name == "pairs.jsonl" else preflamp.load_queries(root, task)
    for i, r in enumerate(records, 1):
        missing = sorted(set(fields) - set(r))
        if missing:
            raise KeyError(f"{f}: record {i} ({r.get('pair_id', r.get('query_id', '?'))!r}) has no field(s) {missing}")
    n = manifest["tasks"][task].get(count_key)
    if n is not None and n != len(records):
        raise ValueError(f"{f}: {len(records)} records, the manifest counts {count_key}={n}")
    return [{k: r[k] for k in fields} for r in records]


def _read_build(root: Path) -> tuple[dict, list[dict], list[dict]]:
    """(manifest, pairs, queries) of a Pref-LaMP build, every task, checked (see :func:`_checked_records`)."""
    if not (root / "manifest.json").exists():
        raise FileNotFoundError(f"no Pref-LaMP build at {root} (no manifest.json): run notebook 01 (`make data`)")
    try:
        manifest = preflamp.load_manifest(root)
    except ValueError as e:
        raise ValueError(f"{root / 'manifest.json'}: not readable JSON ({e})") from None
    if not isinstance(manifest.get("tasks"), dict) or not manifest["tasks"]:
        raise ValueError(f"{root / 'manifest.json'}: no 'tasks' counts; is it a Pref-LaMP manifest?")
    pairs, queries = [], []
    for task in manifest["tasks"]:
        pairs += _checked_records(root, manifest, task, "pairs.jsonl", PAIR_FIELDS, "pairs")
        queries += _checked_records(root, manifest, task, "queries.jsonl", QUERY_FIELDS, "queries")
    return manifest, pairs, queries


def _datasets(pairs: list[dict], queries: list[dict]):
    """The pairs (train / test) and queries (test) as DatasetDicts."""
    from datasets import Dataset, DatasetDict

    fp, fq = _features()
    for what, rows in (("pairs", pairs), ("queries", queries)):
        if not rows:
            raise ValueError(f"the build has no {what}: nothing to export")
    bad = sorted({p["split"] for p in pairs} - {"train", "test"})
    if bad:
        raise ValueError(f"pairs: split value(s) {bad}; a Pref-LaMP pair is train or test")
    pair_dd = DatasetDict({s: Dataset.from_list([p for p in pairs if p["split"] == s], features=fp)
                           for s in ("train", "test")})
    return pair_dd, DatasetDict({"test": Dataset.from_list(queries, features=fq)})


def _table(rows: list[list], head: list[str]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(str(x) for x in r) + " |" for r in rows])


def _license(corpus: str) -> str:
    if corpus == "synthetic":
        return ("Synthetic: every text was generated by this project's synthetic LaMP-format writer (users with "
                "planted writing rules), no LaMP text; the code's license (Apache-2.0) applies.")
    return ("Built from LaMP (Salemi et al. 2023), CC BY-NC-SA 4.0: the prompts, chosen outputs, queries, "
            "references and profiles are LaMP text and stay under LaMP's license (non-commercial, share-alike, "
            "attribution). Do not redistribute this export outside those terms.")


def data_card(manifest: dict, pairs, queries) -> str:
    """The README.md of an export: fields, splits, drop rules with the manifest's counts, license."""
    tasks = list(manifest["tasks"])
    counts = manifest["tasks"]
    splits = [["pairs", s, pairs[s].num_rows] for s in pairs] + [["queries", s, queries[s].num_rows] for s in queries]
    drops = [[k, why] + [counts[t].get(k, "n/a") for t in tasks] for k, why in DROPS.items()]
    kept = [[k] + [counts[t].get(k, "n/a") for t in tasks]
            for k in ("users_in_lamp", "users", "seen_users", "unseen_users", "pairs", "train_pairs", "queries")]
    p = manifest.get("params", {})
    return "\n\n".join([
        "# Pref-LaMP", f"Preference pairs built from {'a synthetic LaMP-format corpus' if manifest.get('corpus') == 'synthetic' else 'LaMP'} "
        f"(corpus `{manifest.get('corpus')}`, split `{p.get('split')}`, rejected `{p.get('rejected')}`, seed "
        f"`{p.get('seed')}`), each user's real output as the chosen response. Built by "
        "`lib/data/preflamp.py` (which documents every rule) and exported by `lib/data/export.py`; "
        "`manifest.json` is the build's own record (parameters, counts, sha256 of every file).",
        "```python\nfrom datasets import load_from_disk\npairs = load_from_disk('<this folder>/pairs')\n"
        "queries = load_from_disk('<this folder>/queries')\n```",
        "## Splits", _table(splits, ["dataset", "split", "rows"]),
        "## Fields: pairs", _table([[k, v] for k, v in PAIR_FIELDS.items()], ["field", "meaning"]),
        "## Fields: queries", _table([[k, v] for k, v in QUERY_FIELDS.items()], ["field", "meaning"]),
        "## Counts per task", _table(kept, ["count"] + tasks),
        "## Drop rules (counts per task)", _table(drops, ["count", "rule"] + tasks),
        "## License", _license(manifest.get("corpus", "lamp")),
    ]) + "\n"


def export_preflamp(preflamp_dir, out_dir) -> dict:
    """Export the Pref-LaMP build ``preflamp_dir`` to ``out_dir`` (see the module docstring), atomically.

    Returns ``{"pairs": {split: rows}, "queries": {split: rows}}``. A missing or edited file, a record without a
    field and a count that differs from the manifest are errors naming the file (and record)."""
    root, out_dir = Path(preflamp_dir), Path(out_dir)
    manifest, pairs, queries = _read_build(root)
    pair_dd, query_dd = _datasets(pairs, queries)
    with atomic_dir(out_dir) as tmp:
        pair_dd.save_to_disk(str(tmp / "pairs"))
        query_dd.save_to_disk(str(tmp / "queries"))
        write_json(tmp / "manifest.json", manifest)
        write_text(tmp / "README.md", data_card(manifest, pair_dd, query_dd))
    return {"pairs": {s: d.num_rows for s, d in pair_dd.items()}, "queries": {s: d.num_rows for s, d in query_dd.items()}}


def main(argv=None) -> int:
    """CLI: export a profile's Pref-LaMP build (``data/processed/<profile>/preflamp``)."""
    from ..core.config import paths

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--preflamp", help="a Pref-LaMP folder (default: the profile's data/processed/<profile>/preflamp)")
    ap.add_argument("--out", required=True, help="output folder (replaced atomically)")
    a = ap.parse_args(argv)
    src = Path(a.preflamp) if a.preflamp else paths(a.profile).preflamp
    print(json.dumps(export_preflamp(src, a.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
