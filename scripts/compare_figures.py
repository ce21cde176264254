"""Compare two figure folders byte for byte (the test of a refactor: results must not move).

    python scripts/compare_figures.py figures/smoke /tmp/run/build/smoke/figures [--strict]

Prints one line per file that differs, is missing or is new, then a count (the comparison:
:func:`lib.report.outputs.compare_folders`; ``make all`` prints a fuller report, with the numbers that moved).
Tables that hold wall-clock times (``WALL_CLOCK``) are listed apart: they differ on every run. ``make test-notebooks`` runs it on the
figures its nbval run wrote against the committed ones, as a report (exit 0); ``--strict`` exits 1 when a
non-wall-clock file differs, is missing or is new.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from lib.report.outputs import WALL_CLOCK, compare_folders  # noqa: E402

compare = compare_folders  # ``{"identical", "differ", "missing", "new", "wall_clock"}`` -> file names
__all__ = ["WALL_CLOCK", "compare", "main"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("expected", help="the reference folder (e.g. the committed figures/smoke)")
    ap.add_argument("actual", help="the folder to check (e.g. a run's build/smoke/figures)")
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
