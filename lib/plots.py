"""One figure style and atomic figure/table writers shared by every notebook.

* :func:`set_theme` - the single seaborn theme of the project (call once per notebook).
* :func:`save_figure` - PNG (dpi 150) + PDF, each written atomically.
* :func:`save_table` - CSV + Markdown + LaTeX, each written atomically. The Markdown writer is
  a few lines here so the project does not depend on ``tabulate``.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .io import atomic_path, write_text

DPI = 150


def set_theme(context: str = "paper", font_scale: float = 1.1) -> None:
    """The project's one seaborn theme (white grid, colour-blind palette, deterministic fonts)."""
    import matplotlib
    import seaborn as sns

    sns.set_theme(context=context, style="whitegrid", palette="colorblind", font_scale=font_scale)
    matplotlib.rcParams.update({"figure.dpi": 100, "savefig.bbox": "tight", "pdf.fonttype": 42,
                                "svg.hashsalt": "prc", "axes.titleweight": "bold"})


def _check_name(name: str) -> str:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"invalid figure/table name {name!r}: use a plain file stem like 'tau_table'")
    return name


def save_figure(fig, name: str, fig_dir) -> list[Path]:
    """Write ``fig`` as ``<fig_dir>/<name>.png`` (dpi 150) and ``.pdf``; returns both paths."""
    fig_dir = Path(fig_dir)
    out = []
    for ext in ("png", "pdf"):
        path = fig_dir / f"{_check_name(name)}.{ext}"
        # PDFs embed a creation date by default: drop it so reruns give identical files
        meta = {"CreationDate": None} if ext == "pdf" else {"Software": None}
        with atomic_path(path, suffix=f".{ext}") as tmp:
            fig.savefig(tmp, format=ext, dpi=DPI, bbox_inches="tight", metadata=meta)
        out.append(path)
    return out


def _fmt(v, floatfmt: str) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else format(v, floatfmt)
    return str(v).replace("|", "\\|").replace("\n", " ")


def to_markdown(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """GitHub Markdown table of ``df`` (index dropped; floats with ``floatfmt``)."""
    cols = [str(c) for c in df.columns]
    rows = [[_fmt(v, floatfmt) for v in r] for r in df.itertuples(index=False, name=None)]
    num = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |",
             "|" + "|".join("---:" if n else ":---" for n in num) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def save_table(df: pd.DataFrame, name: str, fig_dir, floatfmt: str = ".3f") -> list[Path]:
    """Write ``df`` as ``<name>.csv``, ``.md`` and ``.tex`` under ``fig_dir``; returns the paths."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"save_table({name!r}) needs a pandas DataFrame, got {type(df).__name__}")
    fig_dir = Path(fig_dir)
    stem = _check_name(name)
    df = df.reset_index(drop=True)
    csv = fig_dir / f"{stem}.csv"
    with atomic_path(csv, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    md = write_text(fig_dir / f"{stem}.md", to_markdown(df, floatfmt))
    tex_df = df.copy()
    for c in tex_df.columns:
        if pd.api.types.is_float_dtype(tex_df[c]):
            tex_df[c] = tex_df[c].map(lambda v: "" if pd.isna(v) else format(v, floatfmt))
    tex = write_text(fig_dir / f"{stem}.tex", tex_df.to_latex(index=False, escape=True))
    return [csv, md, tex]
