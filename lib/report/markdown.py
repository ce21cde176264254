"""The text of ``figures/<profile>/summary.md`` (notebook 06; the README's Results section is built from it)."""
from __future__ import annotations

import pandas as pd

from .conclusions import PAPER
from .plots import to_markdown


def _fmt(df: pd.DataFrame) -> str:
    return to_markdown(df.round(3))


LABEL_TITLES = {"label_baselines": "What rules that ignore the user reach (test pairs of the preference sets)",
                "worker_agreement": "How often two users agree on the same comparison (the ceiling of shared labels)"}


def summary_markdown(profile: str, corpus: str, policies, tau_rm_policy: pd.DataFrame,
                     generation_best: pd.DataFrame | None, icl_gap: pd.DataFrame | None,
                     tau_rm_rouge: pd.DataFrame | None = None, selection_metrics: pd.DataFrame | None = None,
                     label_checks: dict | None = None, files=(), paper_vs_run: str | None = None) -> str:
    """summary.md: the paper beside this run (``paper_vs_run``: the markdown of
    :func:`lib.report.conclusions.paper_vs_run`, first), the headline tables (tau RM vs policy accuracy, base / best
    ICL / best RGD, ICL minus best RGD), the decoupling sections when there are RGD results (``tau_rm_rouge``, ``selection_metrics`` not None), the label
    checks of the preference sets (``label_checks``: name -> table, e.g. ``label_baselines``, ``worker_agreement``)
    and the list of ``files`` (paths relative to the figures folder). A synthetic ``corpus`` gets the disclaimer that
    the numbers check the pipeline and are not a replication; ``corpus`` "none" (a profile of preference sets only)
    has no generation tables (``generation_best`` and ``icl_gap`` None)."""
    source = ("preference sets only (no Pref-LaMP)" if corpus == "none" else f"Pref-LaMP corpus **{corpus}**")
    lines = [
        f"# Results ({profile} profile)", "",
        (f"_Profile **{profile}**, {source}, policies {', '.join(policies)}"
         + ("; synthetic users and synthetic preference sets: these numbers check the pipeline and are not a "
            "replication of the paper._" if corpus == "synthetic" else "._")), "",
        *(["## The paper beside this run", "", paper_vs_run.strip(), ""] if paper_vs_run else []),
        "## RM accuracy vs policy accuracy (Kendall tau-b, seen users, raw scores, deployed w, test half)", "",
        f"The paper reports tau = {PAPER['tau']['paper']}. Each reward model at its one deployed setting (chosen "
        "on validation pairs, w = 0 a candidate). level rm: 95% CI from a hierarchical bootstrap (methods, then variants; "
        "users, then pairs); level method: exact permutation p, no CI. `status` names a cell below the minimum sizes "
        "(5 models, 20 test pairs, 4 users) or without a defined tau: such a cell has no number.", "",
        _fmt(tau_rm_policy),
    ]
    for name, t in (label_checks or {}).items():
        lines += [f"## {LABEL_TITLES.get(name, name)}", "", _fmt(t.round(3))]
    if generation_best is not None and icl_gap is not None:
        lines += [
            "## Base vs best ICL vs best RGD (ROUGE-1 / ROUGE-L against the user's own output, test queries)", "",
            f"The paper reports ICL minus the best reward-guided method, in ROUGE-1 points: {PAPER['icl']['paper']}.", "",
            _fmt(generation_best), "## ICL minus best RGD (ROUGE-1 points, paired bootstrap CI over test queries)", "",
            _fmt(icl_gap)]
    if tau_rm_rouge is not None and selection_metrics is not None:
        lines += ["## RM accuracy vs RGD ROUGE-1 (Kendall tau-b across reward models)", "",
                  _fmt(tau_rm_rouge[[c for c in ("task", "model", "n", "tau", "ci_lo", "ci_hi", "p_exact", "status")
                                     if c in tau_rm_rouge]]),
                  "## Which selection metric predicts RGD ROUGE-1? (Kendall tau-b across reward models)", "",
                  _fmt(selection_metrics)]
    lines += ["## Files", ""] + [f"- `{f}`" for f in sorted(set(map(str, files)))]
    return "\n".join(lines) + "\n"
