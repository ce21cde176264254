"""lib/report/outputs.py and the run / committed-results split: a run writes build/<profile>/figures and never the
committed figures/<profile>, notebooks/ or README; `make all` reports the differences; refresh-results alone copies."""
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lib.core import pipeline  # noqa: E402
from lib.core.config import paths  # noqa: E402
from lib.report import outputs  # noqa: E402


def test_run_figures_live_in_build_and_committed_results_in_figures(tmp_path):
    P = paths("smoke", tmp_path)
    assert P.figures == tmp_path / "build" / "smoke" / "figures" and P.results == tmp_path / "figures" / "smoke"


def test_outputs_saves_shows_then_closes_and_lists_the_files(tmp_path):
    shown = []
    out = outputs.Outputs(tmp_path, show=lambda fig: shown.append(plt.fignum_exists(fig.number)))
    df = pd.DataFrame({"a": [1.5]})
    assert out.table(df, "t") is df
    fig = plt.figure()
    out.figure(fig, "f")
    assert shown == [True]  # shown while still open (a closed figure displays nothing)
    assert not plt.fignum_exists(fig.number)
    assert [p.as_posix() for p in out.files()] == ["f.pdf", "f.png", "t.csv", "t.md", "t.tex"]
    assert all((tmp_path / p).exists() for p in out.files())


def test_table_changes_says_which_numbers_moved(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    pd.DataFrame({"k": ["x", "y"], "tau": [0.1, float("nan")], "n": [3, 4]}).to_csv(a, index=False)
    pd.DataFrame({"k": ["x", "y"], "tau": [0.25, float("nan")], "n": [3, 4]}).to_csv(b, index=False)
    assert outputs.table_changes(a, b) == "1 of 4 numbers changed (largest |change| 0.15, in tau)"
    pd.DataFrame({"k": ["x", "z"], "tau": [0.1, float("nan")], "n": [3, 4]}).to_csv(b, index=False)
    assert outputs.table_changes(a, b) == "1 text cells changed"
    pd.DataFrame({"k": ["x"], "tau": [0.1], "n": [3]}).to_csv(b, index=False)
    assert outputs.table_changes(a, b) == "2 -> 1 rows"
    pd.DataFrame({"k": ["x", "y"], "rho": [0.1, 0.2], "n": [3, 4]}).to_csv(b, index=False)
    assert outputs.table_changes(a, b) == "columns changed (removed ['tau'], added ['rho'])"


def _folders(tmp_path, profile="q"):
    P = paths(profile, tmp_path)
    for d, tau in ((P.results, 0.1), (P.figures, 0.2)):
        d.mkdir(parents=True)
        pd.DataFrame({"tau": [tau]}).to_csv(d / "tau.csv", index=False)
        (d / "same.md").write_text("x")
        (d / "rm_train_time.csv").write_text(str(tau))  # wall clock: never compared
        (d / "summary.md").write_text(f"tau {tau}")
    (P.results / "old.png").write_bytes(b"1")
    (P.figures / "new.png").write_bytes(b"2")
    return P


def test_report_lists_identical_changed_and_only_one_side_files_and_writes_nothing(tmp_path):
    _folders(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    lines = []
    res = outputs.report("q", tmp_path, out=lines.append)
    assert res["figures"] == {"identical": ["same.md"], "differ": ["summary.md", "tau.csv"], "missing": ["old.png"],
                              "new": ["new.png"], "wall_clock": ["rm_train_time.csv"]}
    text = "\n".join(lines)
    assert "1 files byte-identical, 4 not (2 differ, 1 only committed, 1 only in this run)" in text
    assert "tau.csv: 1 of 1 numbers changed (largest |change| 0.1, in tau)" in text
    assert "README results block" in text and "make refresh-results PROFILE=q" in text
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    lines.clear()
    outputs.report("nothing", tmp_path, out=lines.append)
    assert "no figures from this run" in lines[0]


def test_report_says_when_the_run_reproduces_the_committed_results(tmp_path):
    P = paths("q", tmp_path)
    for d in (P.results, P.figures):
        d.mkdir(parents=True)
        (d / "t.csv").write_text("a\n1\n")
    lines = []
    outputs.report("q", tmp_path, out=lines.append)
    assert lines[-1] == "[results] this run reproduces the committed results"
    P.results.joinpath("t.csv").unlink()
    P.results.rmdir()
    lines.clear()
    outputs.report("q", tmp_path, out=lines.append)
    assert "no committed results for profile q" in lines[0]


def test_refresh_makes_the_committed_folder_a_copy_of_the_run(tmp_path):
    P = _folders(tmp_path)
    outputs.refresh("q", tmp_path, out=lambda s: None)
    assert outputs.compare_folders(P.results, P.figures)["differ"] == []
    assert not (P.results / "old.png").exists() and (P.results / "new.png").read_bytes() == b"2"
    with pytest.raises(FileNotFoundError, match="make all PROFILE=other"):
        outputs.refresh("other", tmp_path)


def _kept_notebook(path, text):
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(1)", metadata={"keep_output": True, "tags": ["nbval-check-output"]})
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
    nb.cells = [nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}), cell]
    nbformat.write(nb, path)
    return cell.id


def test_changed_kept_cells_names_the_cells_a_refresh_would_rewrite(tmp_path):
    src, run = tmp_path / "src.ipynb", tmp_path / "run.ipynb"
    cid = _kept_notebook(src, "tau 0.1\n")
    nb = json.loads(src.read_text())
    nb["cells"][1]["outputs"][0]["text"] = "tau 0.2\n"
    run.write_text(json.dumps(nb))
    assert pipeline.changed_kept_cells(run, src) == [cid]
    assert pipeline.changed_kept_cells(src, src) == []


def test_a_notebook_run_never_rewrites_the_committed_notebook(tmp_path, monkeypatch):
    """`make all` runs every notebook through pipeline.run: the kept outputs in notebooks/ must not move (only
    `make refresh-results` copies them), whatever the executed notebook printed."""
    import shutil

    import papermill

    nbs = tmp_path / "notebooks"  # a copy: were the check to fail, it must not rewrite the repository's notebooks
    shutil.copytree(pipeline.NOTEBOOKS, nbs, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    monkeypatch.setattr(pipeline, "NOTEBOOKS", nbs)
    committed = pipeline.notebook_path("02_train_reward_models")
    assert committed.parent == nbs
    before = committed.read_bytes()

    def fake_execute(src, out, **kw):
        nb = json.loads(open(src).read())
        for c in pipeline.kept_cells(nb):
            c["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "a moved headline\n"}]
        open(out, "w").write(json.dumps(nb))

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    out = pipeline.run("02_train_reward_models", "smoke", out_dir=tmp_path / "build")
    assert "a moved headline" in out.read_text()
    assert committed.read_bytes() == before
    assert pipeline.changed_kept_cells(out, committed)  # what `make all`'s report shows instead
