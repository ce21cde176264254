"""The text of ``figures/<profile>/summary.md`` (notebook 06; the README's Results section is built from it)."""
from __future__ import annotations

import pandas as pd

from .plots import to_markdown


def _fmt(df: pd.DataFrame) -> str:
    return to_markdown(df.round(3))


def summary_markdown(profile: str, corpus: str, policies, tau_rm_policy: pd.DataFrame, generation_best: pd.DataFrame,
                     icl_gap: pd.DataFrame, tau_rm_rouge: pd.DataFrame | None = None,
                     selection_metrics: pd.DataFrame | None = None, files=()) -> str:
    """summary.md: the headline tables (tau RM vs policy accuracy, base / best ICL / best RGD, ICL minus best RGD),
    the decoupling sections when there are RGD results (``tau_rm_rouge``, ``selection_metrics`` not None), and the
    list of ``files`` (paths relative to the figures folder). A synthetic ``corpus`` gets the disclaimer that the
    numbers check the pipeline and are not a replication."""
    lines = [
        f"# Results ({profile} profile)", "",
        (f"_Profile **{profile}**, Pref-LaMP corpus **{corpus}**, policies {', '.join(policies)}"
         + ("; synthetic users and synthetic preference sets: these numbers check the pipeline and are not a "
            "replication of the paper._" if corpus == "synthetic" else "._")), "",
        "## RM accuracy vs policy accuracy (Kendall tau-b, seen users, raw scores, validation-selected w, test half)", "",
        "The paper reports tau = 0.08-0.31 across three datasets. CIs resample reward models and pairs.", "",
        _fmt(tau_rm_policy),
        "## Base vs best ICL vs best RGD (ROUGE-1 / ROUGE-L against the user's own output, test queries)", "",
        "The paper reports ICL about +3 ROUGE-1 points over the best reward-guided method at 7B.", "",
        _fmt(generation_best), "## ICL minus best RGD (ROUGE-1 points)", "", _fmt(icl_gap),
    ]
    if tau_rm_rouge is not None and selection_metrics is not None:
        lines += ["## RM accuracy vs RGD ROUGE-1 (Kendall tau-b across reward models)", "",
                  _fmt(tau_rm_rouge[["task", "model", "n", "tau", "ci_lo", "ci_hi"]]),
                  "## Which selection metric predicts RGD ROUGE-1? (Kendall tau-b across reward models)", "",
                  _fmt(selection_metrics)]
    lines += ["## Files", ""] + [f"- `{f}`" for f in sorted(set(map(str, files)))]
    return "\n".join(lines) + "\n"
