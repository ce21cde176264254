"""Project hygiene: pinned environments agree, configs match the notebooks, notebooks are stripped."""
import json
import re
from pathlib import Path

import pytest
import yaml

from lib import REPO_ROOT, pipeline

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
    from packaging.requirements import Requirement

    import tomllib

    req = _pins((REPO_ROOT / "requirements.txt").read_text().splitlines())
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    for spec in pyproject["dependencies"]:
        r = Requirement(spec)
        assert r.specifier.contains(req[r.name.lower()], prereleases=True), f"{r} vs pin {req[r.name.lower()]}"


@pytest.mark.parametrize("profile", ["smoke", "paper"])
def test_config_keys_are_declared_by_the_notebooks(profile):
    cfg = yaml.safe_load((REPO_ROOT / "configs" / f"{profile}.yaml").read_text())
    names = {p.stem for p in NOTEBOOKS}
    assert set(cfg["notebooks"]) <= names, f"unknown notebooks in {profile}.yaml"
    for nb in cfg["notebooks"]:
        pipeline.parameters_for(nb, profile)  # raises on an undeclared key


def test_smoke_config_equals_the_notebook_defaults():
    cfg = yaml.safe_load((REPO_ROOT / "configs" / "smoke.yaml").read_text())
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
            assert not cell.get("outputs") and cell.get("execution_count") is None, \
                f"{path.name} has outputs: run `make strip` before committing"
    tags = [c.get("metadata", {}).get("tags", []) for c in nb["cells"] if c["cell_type"] == "code"]
    assert "parameters" in tags[0], f"{path.name}: the first code cell must be tagged 'parameters'"
    assert "profile" in pipeline.declared_parameters(path)


def test_notebooks_pass_nbstripout_verify():
    import shutil
    import subprocess
    import sys

    exe = shutil.which("nbstripout") or str(Path(sys.executable).parent / "nbstripout")
    r = subprocess.run([exe, "--verify", *map(str, NOTEBOOKS)], capture_output=True, text=True)
    assert r.returncode == 0, f"run `make strip` before committing:\n{r.stdout}{r.stderr}"
