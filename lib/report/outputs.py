"""Where a run's tables and figures go, and how they become the committed results.

A run (``make all``, or notebook 06 in Jupyter) writes every table and figure of a profile under
``build/<profile>/figures/`` (git-ignored; :attr:`lib.core.config.Paths.figures`) through :class:`Outputs`. The
repository's ``figures/<profile>/`` (:attr:`lib.core.config.Paths.results`), the kept headline outputs of
``notebooks/`` and the README's results block are the *committed* results: ``make all`` only reports how the run
differs from them (:func:`report`: byte-identical files, tables whose numbers moved, kept cells that would change),
and ``make refresh-results`` alone rewrites them (:func:`refresh`, then ``scripts/update_readme.py``).

    python -m lib.report.outputs report  --profile smoke    # what `make all` prints at the end
    python -m lib.report.outputs refresh --profile smoke    # what `make refresh-results` runs
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

import pandas as pd

from ..core.config import paths
from ..core.pipeline import KEEP_PROFILE, NOTEBOOKS, changed_kept_cells, keep_outputs
from . import plots

WALL_CLOCK = ("rm_train_time",)  # tables of seconds: never byte-identical across runs


class Outputs:
    """Notebook 06's writer: ``table(df, name)`` saves CSV, Markdown and LaTeX and returns ``df``; ``figure(fig,
    name)`` saves PNG and PDF, shows the figure where it is discussed (``show``, default IPython's ``display``),
    then closes it. ``written`` lists every file, in order (summary.md's file list: :meth:`files`)."""

    def __init__(self, folder, show=None):
        self.folder, self.written = Path(folder), []
        self._show = show

    def table(self, df: pd.DataFrame, name: str) -> pd.DataFrame:
        self.written.extend(plots.save_table(df, name, self.folder))
        return df

    def figure(self, fig, name: str) -> None:
        import matplotlib.pyplot as plt

        self.written.extend(plots.save_figure(fig, name, self.folder))
        show = self._show
        if show is None:
            from IPython.display import display as show
        show(fig)
        plt.close(fig)

    def files(self) -> list[Path]:
        """The files written, relative to the folder, each once, sorted."""
        return sorted({p.relative_to(self.folder) for p in self.written})


# --- a run against the committed results ---------------------------------------------------------------------
def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compare_folders(expected, actual) -> dict[str, list[str]]:
    """``{"identical", "differ", "missing", "new", "wall_clock"}`` -> file names (relative, sorted): ``expected`` (the
    committed folder) against ``actual`` (a run's). Tables of wall-clock seconds (:data:`WALL_CLOCK`) are listed
    apart: they differ on every run."""
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
            out["identical" if _digest(expected / name) == _digest(actual / name) else "differ"].append(name)
    return out


def table_changes(expected_csv, actual_csv) -> str:
    """What moved between two versions of a CSV table, in words: rows or columns added or removed, or how many
    numbers changed and the largest change (with its column), or how many text cells changed."""
    a, b = pd.read_csv(expected_csv), pd.read_csv(actual_csv)
    if list(a.columns) != list(b.columns):
        gone, new = sorted(set(a.columns) - set(b.columns)), sorted(set(b.columns) - set(a.columns))
        return f"columns changed (removed {gone}, added {new})" if gone or new else "columns reordered"
    if len(a) != len(b):
        return f"{len(a)} -> {len(b)} rows"
    parts = []
    num = [c for c in a.columns if pd.api.types.is_numeric_dtype(a[c]) and pd.api.types.is_numeric_dtype(b[c])]
    if num:
        x, y = a[num].to_numpy(float), b[num].to_numpy(float)
        moved = ~((x == y) | (pd.isna(x) & pd.isna(y)))
        if moved.any():
            diff = pd.DataFrame(abs(x - y), columns=num).where(moved)
            col = diff.max().idxmax()
            big = diff.max().max()
            parts.append(f"{int(moved.sum())} of {moved.size} numbers changed"
                         + (f" (largest |change| {big:.4g}, in {col})" if pd.notna(big) else " (NaN <-> number)"))
    text = [c for c in a.columns if c not in num]
    if text:
        n = int((a[text].fillna("").astype(str) != b[text].fillna("").astype(str)).to_numpy().sum())
        if n:
            parts.append(f"{n} text cells changed")
    return "; ".join(parts) or "same values, different bytes (formatting)"


def report(profile: str, root=None, out=print) -> dict:
    """Print (``out``) how this run's results differ from the committed ones and return the comparison: the figure
    folder file by file (tables: which numbers moved), the kept headline outputs of the notebooks (profile smoke:
    the notebooks' defaults, the ones nbval checks) and the README block (from summary.md). Nothing is written."""
    P = paths(profile, root)
    res = {"figures": None, "kept": {}}
    if not P.figures.is_dir():
        out(f"[results] {P.figures}: no figures from this run (run notebook 06: make figures PROFILE={profile})")
        return res
    if not P.results.is_dir():
        out(f"[results] no committed results for profile {profile} ({P.results} absent): this run's figures are in "
            f"{P.figures}; `make refresh-results PROFILE={profile}` would commit them there")
        return res
    cmp = res["figures"] = compare_folders(P.results, P.figures)
    bad = len(cmp["differ"]) + len(cmp["missing"]) + len(cmp["new"])
    out(f"[results] {P.figures} vs the committed {P.results}: {len(cmp['identical'])} files byte-identical, {bad} not"
        f" ({len(cmp['differ'])} differ, {len(cmp['missing'])} only committed, {len(cmp['new'])} only in this run);"
        f" {len(cmp['wall_clock'])} wall-clock files not compared")
    for name in cmp["differ"]:
        why = table_changes(P.results / name, P.figures / name) if name.endswith(".csv") else "bytes differ"
        out(f"  differ   {name}: {why}")
    for kind in ("missing", "new"):
        for name in cmp[kind]:
            out(f"  {'committed only' if kind == 'missing' else 'run only':14s} {name}")
    if "summary.md" in cmp["differ"]:
        out("  the README results block (built from summary.md) would change")
    if profile == KEEP_PROFILE:
        for nb in sorted(NOTEBOOKS.glob("[0-9]*.ipynb")):
            run = P.root / "build" / profile / nb.name
            if run.exists():
                res["kept"][nb.name] = changed = changed_kept_cells(run, nb)
                if changed:
                    out(f"  kept output of {nb.name} would change (cells {', '.join(changed)})")
    if not bad and not any(res["kept"].values()):
        out("[results] this run reproduces the committed results")
    else:
        out(f"[results] `make refresh-results PROFILE={profile}` makes this run the committed results")
    return res


def refresh(profile: str, root=None, out=print) -> None:
    """Make this run the committed results: ``figures/<profile>/`` becomes a copy of the run's figure folder (files
    the run no longer writes are removed) and, for the smoke profile, the kept headline outputs of every notebook the
    run executed are copied into ``notebooks/`` (:func:`lib.core.pipeline.keep_outputs`). The README block follows
    with ``scripts/update_readme.py`` (``make refresh-results`` runs both)."""
    P = paths(profile, root)
    if not (P.figures / "summary.md").exists():
        raise FileNotFoundError(f"{P.figures / 'summary.md'} missing: run `make all PROFILE={profile}` first")
    P.results.mkdir(parents=True, exist_ok=True)
    run = {p.relative_to(P.figures) for p in P.figures.rglob("*") if p.is_file()}
    for old in sorted(p for p in P.results.rglob("*") if p.is_file() and p.relative_to(P.results) not in run):
        old.unlink()
        out(f"[refresh] removed {old} (the run no longer writes it)")
    for rel in sorted(run):
        (P.results / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(P.figures / rel, P.results / rel)
    out(f"[refresh] {len(run)} files -> {P.results}")
    if profile == KEEP_PROFILE:
        for nb in sorted(NOTEBOOKS.glob("[0-9]*.ipynb")):
            executed = P.root / "build" / profile / nb.name
            if executed.exists() and (n := keep_outputs(executed, nb)):
                out(f"[refresh] {n} kept output cell(s) of {nb.name} updated")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("report", "refresh"))
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--root", default=None, help="the data root (default: $PRC_ROOT or the repository)")
    a = ap.parse_args(argv)
    (report if a.action == "report" else refresh)(a.profile, a.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
