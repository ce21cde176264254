"""summary.md (lib/markdown.py): disclaimer only for the synthetic corpus, RGD sections only with RGD results, files."""
import pandas as pd

from lib.report import markdown

TAU = pd.DataFrame({"task": ["t"], "policy": ["p"], "definition": ["cumulative"], "level": ["rm"], "tau": [0.12345]})
BEST = pd.DataFrame({"task": ["t"], "model": ["p"], "system": ["icl"], "rouge1": [0.5]})
GAP = pd.DataFrame({"task": ["t"], "model": ["p"], "icl_minus_best_rgd_points": [3.0]})
TAU_ROUGE = pd.DataFrame({"task": ["t"], "model": ["p"], "n": [4], "tau": [0.5], "ci_lo": [-1.0], "ci_hi": [1.0],
                          "p": [0.3]})
SEL = pd.DataFrame({"task": ["t"], "policy": ["p"], "metric": ["RM accuracy"], "tau": [0.25]})


def test_synthetic_corpus_gets_the_disclaimer_and_real_does_not():
    syn = markdown.summary_markdown("smoke", "synthetic", ["a", "b"], TAU, BEST, GAP)
    real = markdown.summary_markdown("paper", "lamp", ["a"], TAU, BEST, GAP)
    assert syn.startswith("# Results (smoke profile)\n\n_Profile **smoke**, Pref-LaMP corpus **synthetic**, policies a, b;")
    assert "not a replication of the paper" in syn and "synthetic users" in syn
    assert "not a replication" not in real and "_Profile **paper**, Pref-LaMP corpus **lamp**, policies a._" in real
    assert "| 0.123 |" in syn  # tables rounded to 3 decimals
    assert syn.endswith("## Files\n\n")


def test_rgd_sections_only_with_rgd_results_and_the_file_list():
    without = markdown.summary_markdown("smoke", "synthetic", ["a"], TAU, BEST, GAP, files=["b.csv", "a.png", "b.csv"])
    assert "RGD ROUGE-1 (Kendall" not in without and "Which selection metric" not in without
    assert without.endswith("## Files\n\n- `a.png`\n- `b.csv`\n")  # sorted, each once
    full = markdown.summary_markdown("smoke", "synthetic", ["a"], TAU, BEST, GAP, tau_rm_rouge=TAU_ROUGE,
                                   selection_metrics=SEL)
    assert "## RM accuracy vs RGD ROUGE-1 (Kendall tau-b across reward models)" in full
    assert "## Which selection metric predicts RGD ROUGE-1?" in full and "RM accuracy | 0.250" in full
    rouge = full.split("## RM accuracy vs RGD ROUGE-1")[1].split("## Which")[0]
    assert "| task | model | n | tau | ci_lo | ci_hi |\n" in rouge  # the summary leaves out the p column
    sections = [line for line in full.splitlines() if line.startswith("## ")]
    assert sections[0].startswith("## RM accuracy vs policy accuracy") and sections[-1] == "## Files"
