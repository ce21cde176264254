"""Compare two figure folders byte for byte (the test of a refactor: results must not move).

    python scripts/compare_figures.py figures/smoke /tmp/run/figures/smoke [--strict]

Prints one line per file that differs, is missing or is new, then a count. Tables that hold wall-clock
times (``WALL_CLOCK``) are listed apart: they differ on every run. ``make test-notebooks`` runs it on the
figures its nbval run wrote against the committed ones, as a report (exit 0); ``--strict`` exits 1 when a
non-wall-clock file differs, is missing or is new.
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

WALL_CLOCK = ("rm_train_time",)  # tables of seconds: never byte-identical across runs


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compare(expected, actual) -> dict[str, list[str]]:
    """``{"identical", "differ", "missing", "new", "wall_clock"}`` -> file names (relative, sorted)."""
    expected, actual = Path(expected), Path(actual)
    for d in (expected, actual):
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: no such folder")
    a = {p.relative_to(expected).as_posix() for p in expected.rglob("*") if p.is_file()}
    b = {p.relative_to(actual).as_posix() for p in actual.rglob("*") if p.is_file()}
    out: dict[str, list[str]] = {k: [] for k in ("identical", "differ", "missing", "new", "wall_clock")}
    for name in sorted(a | b):
        if Path(name).stem in WALL_CLOCK:
            out["wall_clock"].append(name)
        elif name not in b:
            out["missing"].append(name)
        elif name not in a:
            out["new"].append(name)
        else:
            same = _digest(expected / name) == _digest(actual / name)
            out["identical" if same else "differ"].append(name)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("expected", help="the reference folder (e.g. the committed figures/smoke)")
    ap.add_argument("actual", help="the folder to check (e.g. a fresh run's figures/smoke)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a non-wall-clock file differs")
    a = ap.parse_args(argv)
    res = compare(a.expected, a.actual)
    for kind in ("differ", "missing", "new"):
        for name in res[kind]:
            print(f"  {kind:8s} {name}")
    bad = len(res["differ"]) + len(res["missing"]) + len(res["new"])
    print(f"[compare_figures] {len(res['identical'])} files byte-identical, {bad} not "
          f"({len(res['differ'])} differ, {len(res['missing'])} missing, {len(res['new'])} new); "
          f"{len(res['wall_clock'])} wall-clock files not compared: {a.expected} vs {a.actual}")
    return 1 if a.strict and bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
