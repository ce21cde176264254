"""Project hygiene: pinned environments agree, configs match the notebooks, notebooks are stripped."""
import json
import re
from pathlib import Path

import pytest
import yaml

from lib import REPO_ROOT
from lib.core import pipeline

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9]*.ipynb"))


def _pins(lines):
    out = {}
    for line in lines:
        line = line.split("#")[0].strip().lstrip("- ").strip()
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)$", line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_environment_yml_agrees_with_requirements():
    req = _pins((REPO_ROOT / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda = _pins(pip_list)
    assert conda, "environment.yml lists no pinned pip packages"
    for name, version in conda.items():
        assert req.get(name) == version, f"{name}: environment.yml {version} vs requirements.txt {req.get(name)}"
    # every direct dependency of the project is pinned in both
    import tomllib

    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    direct = pyproject["dependencies"] + pyproject["optional-dependencies"]["notebooks"]
    for spec in direct:
        name = re.split(r"[<>=!~ \[]", spec)[0].lower().replace("_", "-")
        assert name in req, f"{name} missing from requirements.txt"
        assert name in conda, f"{name} missing from environment.yml"


def test_pins_satisfy_pyproject_ranges():
    import tomllib

    from packaging.requirements import Requirement

    req = _pins((REPO_ROOT / "requirements.txt").read_text().splitlines())
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    for spec in pyproject["dependencies"]:
        r = Requirement(spec)
        assert r.specifier.contains(req[r.name.lower()], prereleases=True), f"{r} vs pin {req[r.name.lower()]}"


@pytest.mark.parametrize("profile", sorted(p.stem for p in (REPO_ROOT / "configs").glob("*.yaml")))
def test_config_keys_are_declared_by_the_notebooks(profile):
    cfg = yaml.safe_load((REPO_ROOT / "configs" / f"{profile}.yaml").read_text())
    names = {p.stem for p in NOTEBOOKS}
    assert set(cfg["notebooks"]) <= names, f"unknown notebooks in {profile}.yaml"
    for nb in cfg["notebooks"]:
        pipeline.parameters_for(nb, profile)  # raises on an undeclared key


def test_smoke_config_equals_the_notebook_defaults():
    for path in NOTEBOOKS:
        declared = pipeline.declared_parameters(path)
        params = pipeline.parameters_for(path.stem, "smoke")
        for k, v in params.items():
            assert eval(declared[k]) == v, f"{path.name}: smoke.yaml {k}={v!r} but the notebook says {declared[k]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_stripped_and_parameterised(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("execution_count") is None, f"{path.name}: run `make strip` before committing"
            if cell.get("metadata", {}).get("keep_output"):  # headline numbers nbval compares
                assert "nbval-check-output" in cell["metadata"].get("tags", []), \
                    f"{path.name} cell {cell['id']}: a kept output must be tagged nbval-check-output"
            else:
                assert not cell.get("outputs"), f"{path.name} has outputs: run `make strip` before committing"
    tags = [c.get("metadata", {}).get("tags", []) for c in nb["cells"] if c["cell_type"] == "code"]
    assert "colab-setup" in tags[0], f"{path.name}: the first code cell must be the set-up cell (scripts/colab_setup.py)"
    assert "parameters" in tags[1], f"{path.name}: the second code cell must be tagged 'parameters'"
    assert "profile" in pipeline.declared_parameters(path)
    ids = [c.get("id") for c in nb["cells"]]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    assert not dup, (f"{path.name}: cell ids {dup} occur twice; kept outputs are copied by cell id "
                     f"(lib.core.pipeline.keep_outputs), so give each cell its own id")


def test_notebooks_pass_nbstripout_verify():
    import shutil
    import subprocess
    import sys

    exe = shutil.which("nbstripout") or str(Path(sys.executable).parent / "nbstripout")
    r = subprocess.run([exe, "--verify", *map(str, NOTEBOOKS)], capture_output=True, text=True)
    assert r.returncode == 0, f"run `make strip` before committing:\n{r.stdout}{r.stderr}"


def test_headline_cells_keep_committed_outputs():
    """RM accuracy (02), tau (04) and base / ICL / RGD ROUGE (05) are compared by nbval against committed outputs."""
    kept = {p.name: pipeline.kept_cells(json.loads(p.read_text())) for p in NOTEBOOKS}
    for name in ("02_train_reward_models.ipynb", "04_policy_accuracy.ipynb", "05_generation.ipynb"):
        assert kept[name], f"{name}: no kept headline cell"
        for cell in kept[name]:
            assert cell.get("outputs"), f"{name} cell {cell['id']}: no committed output; run `make refresh-results` and commit"


def _tiny_notebook(path, printed: str, stored: str):
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(f"print({printed!r})", metadata={"keep_output": True,
                                                                      "tags": ["nbval-check-output"]})
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stored + "\n")]
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), cell]
    nbformat.write(nb, path)


def test_nbval_fails_when_a_kept_number_moves(tmp_path):
    """The mechanism of `make test-notebooks`: a kept cell whose output differs from the committed one fails."""
    import shutil
    import subprocess
    import sys

    for f in ("conftest.py", "pytest.ini", "nbval-sanitize.cfg"):  # the settings `make test-notebooks` uses
        shutil.copy(REPO_ROOT / "notebooks" / f, tmp_path / f)
    _tiny_notebook(tmp_path / "same.ipynb", "tau 0.243", "tau 0.243")
    _tiny_notebook(tmp_path / "moved.ipynb", "tau 0.244", "tau 0.243")
    run = lambda nb: subprocess.run([sys.executable, "-m", "pytest", nb],  # noqa: E731
                                    capture_output=True, text=True, cwd=tmp_path)
    ok, moved = run("same.ipynb"), run("moved.ipynb")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert moved.returncode != 0 and "0.244" in moved.stdout, moved.stdout


def test_keep_outputs_copies_only_kept_cells(tmp_path):
    import nbformat

    src, run = tmp_path / "src.ipynb", tmp_path / "run.ipynb"
    _tiny_notebook(src, "a", "old")
    nb = nbformat.read(src, as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="new\n")]
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="not kept\n")]
    nbformat.write(nb, run)
    mtime = src.stat().st_mtime_ns
    assert pipeline.keep_outputs(run, src) == 1 and pipeline.keep_outputs(run, src) == 0
    back = json.loads(src.read_text())
    assert "".join(back["cells"][1]["outputs"][0]["text"]) == "new\n" and not back["cells"][0]["outputs"]
    assert src.stat().st_mtime_ns == mtime  # results, not inputs: Make does not re-run the notebook


def test_committed_smoke_results_are_not_degenerate():
    """The committed smoke tables show the degenerate flag, and no method is a constant model everywhere
    (PAL used to score exactly 0.500 in every cell: a zero projection that never learned)."""
    import pandas as pd

    acc = pd.read_csv(REPO_ROOT / "figures" / "smoke" / "rm_accuracy.csv")
    assert "degenerate" in acc.columns
    for method, g in acc.groupby("method"):
        vals = pd.concat([g.rm_acc_seen, g.rm_acc_unseen]).dropna()
        assert len(vals) and not (vals == 0.5).all(), f"{method}: RM accuracy exactly 0.5 in every cell"
    taus = pd.read_csv(REPO_ROOT / "figures" / "smoke" / "tau_rm_policy.csv")
    assert {"tldr", "prism", "personalllm", "LaMP-4", "LaMP-5", "LaMP-7"} <= set(taus.task), \
        "the tau table needs a block per preference dataset and per Pref-LaMP task"
    assert {"rm", "method"} == set(taus.level)


def _mentioned_paths(text: str) -> set[str]:
    """Repository paths a text names: lib/..., scripts/..., tests/..., configs/..., notebooks/..., figures/...,
    .ci/..., or a bare file name with a code or config suffix; templated names (<profile>, *, PROFILE) skipped."""
    pat = re.compile(r"(?<![\w/.-])((?:lib|scripts|tests|configs|notebooks|figures|\.ci)/[\w./-]*\w/?"
                     r"|[\w-]+\.(?:py|yaml|ipynb|cfg|ini|toml|txt|yml))(?![\w/-])")
    return {m for m in pat.findall(text) if not any(x in m for x in ("<", "*", "PROFILE", "NN_"))}


def test_every_path_in_readme_configs_and_notebooks_exists():
    texts = {"README.md": (REPO_ROOT / "README.md").read_text()}
    texts |= {f"configs/{f.name}": f.read_text() for f in (REPO_ROOT / "configs").glob("*.yaml")}
    for f in NOTEBOOKS:
        cells = json.loads(f.read_text())["cells"]
        texts[f"notebooks/{f.name}"] = "\n".join("".join(c["source"]) for c in cells)
    dirs = ["", "lib", "scripts", "tests", "configs", "notebooks"]
    dirs += [f"lib/{p.parent.name}" for p in (REPO_ROOT / "lib").glob("*/__init__.py")]  # lib/rewards/heads.py ...
    missing = sorted((where, m) for where, t in texts.items() for m in _mentioned_paths(t)
                     if not any((REPO_ROOT / d / m).exists() for d in dirs))
    assert not missing, f"paths named but absent: {missing}"
    assert "tests/real_lamp_fixture.py" in _mentioned_paths(texts["README.md"])  # the check does look
    # a folder named with its slash is read whole, not cut at a hyphen (`figures/tldr-real/` is not `figures/tldr`)
    assert _mentioned_paths("see `figures/tldr-real/` and lib/core/io.py.") == {"figures/tldr-real/", "lib/core/io.py"}


def _layout_block() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1]


def test_readme_layout_names_every_stage_and_script():
    """The README's Layout section is the map of the tree at the level of stages: every lib sub-package, in
    the order of tests/test_layout.py's STAGES (the order imports may run), and every script; no stage is
    named that does not exist. The modules inside a stage are what its folder name and __init__ say."""
    from test_layout import STAGES

    block = _layout_block()
    named = re.findall(r"^  (\w+)/", block, flags=re.M)
    packages = sorted(p.parent.name for p in (REPO_ROOT / "lib").glob("*/__init__.py"))
    assert named == list(STAGES), f"README Layout names the stages {named}; lib's stages are {list(STAGES)}"
    assert sorted(named) == packages, f"README Layout names {named}; lib has {packages}"
    scripts = [p.name for p in (REPO_ROOT / "scripts").glob("*.py")]
    absent = [f for f in scripts if not re.search(rf"(?<![\w/]){re.escape(f)}(?!\w)", block)]
    assert not absent, f"README Layout does not name {absent}"


def test_only_notebook_06_writes_figures():
    """Notebooks 01-05 write data artifacts; 06 alone turns them into figures/ (one writer per file)."""
    writers = ("save_figure", "save_table", "P.figures", "FIG /", "Outputs(")
    for f in NOTEBOOKS:
        if f.name.startswith("06_"):
            continue
        src = "\n".join("".join(c["source"]) for c in json.loads(f.read_text())["cells"] if c["cell_type"] == "code")
        assert not [w for w in writers if w in src], f"{f.name} writes figures/ ({[w for w in writers if w in src]})"


# Modules allowed past ~400 lines, with the one idea that makes them long.
LONG_MODULES = {
    # the registry and its one lookup order (mapping, registry, local folder, hub id) with the loaders of each kind
    "lib/core/models.py": "one lookup order: splitting it would scatter how a model name resolves",
}


def test_lib_modules_stay_short():
    long = {p.relative_to(REPO_ROOT).as_posix(): n for p in (REPO_ROOT / "lib").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 420 and p.relative_to(REPO_ROOT).as_posix() not in LONG_MODULES}
    assert not long, f"split these by concern (or justify them in LONG_MODULES): {long}"


def test_license_citation_and_data_card_are_there():
    import yaml

    assert "Apache License" in (REPO_ROOT / "LICENSE").read_text() and "Version 2.0" in (REPO_ROOT / "LICENSE").read_text()
    assert 'license = "Apache-2.0"' in (REPO_ROOT / "pyproject.toml").read_text()
    cff = yaml.safe_load((REPO_ROOT / "CITATION.cff").read_text())
    assert {"cff-version", "message", "title", "authors"} <= set(cff) and cff["license"] == "Apache-2.0"
    assert "2512.23067" in cff["preferred-citation"]["url"]
    card = (REPO_ROOT / "data" / "README.md").read_text()
    for folder in ("raw/", "processed/<profile>/preflamp/", "processed/<profile>/prefsets/", "processed/<profile>/rms/",
                   "processed/<profile>/eval/", "cache/"):
        assert f"`{folder}" in card, folder
    from lib.data import preflamp

    for count in preflamp.NEW_COUNTS + ("pairs_dropped_identical", "pairs_dropped_leak", "users_skipped_small_profile"):
        assert f"`{count}`" in card, count  # every drop the manifest counts is explained
