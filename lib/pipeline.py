"""Run a notebook of the pipeline with a profile's parameters (what the Makefile calls).

    python -m lib.pipeline NOTEBOOK [--profile smoke]

``configs/<profile>.yaml`` holds ``common`` parameters and one section per notebook; papermill
injects them into the notebook's ``parameters`` cell. A key that the notebook does not declare is an
error (a typo would otherwise be ignored). The executed notebook goes to ``build/<profile>/``
(git-ignored); the artifacts it writes are what the Makefile tracks.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import REPO_ROOT
from .config import load_profile

NOTEBOOKS = REPO_ROOT / "notebooks"


def notebook_path(name: str) -> Path:
    path = NOTEBOOKS / (name if name.endswith(".ipynb") else f"{name}.ipynb")
    if not path.exists():
        known = sorted(p.stem for p in NOTEBOOKS.glob("[0-9]*.ipynb"))
        raise FileNotFoundError(f"no notebook {path.name}; known: {known}")
    return path


def declared_parameters(path: Path) -> dict:
    import papermill

    return {k: v["default"] for k, v in papermill.inspect_notebook(str(path)).items()}


def parameters_for(name: str, profile: str) -> dict:
    cfg = load_profile(profile)
    path = notebook_path(name)
    params = {**(cfg.get("common") or {}), **((cfg.get("notebooks") or {}).get(path.stem) or {})}
    declared = declared_parameters(path)
    unknown = sorted(set(params) - set(declared))
    common_only = set(cfg.get("common") or {})
    unknown = [k for k in unknown if k not in common_only]  # common keys apply where declared
    if unknown:
        raise KeyError(f"configs/{profile}.yaml sets {unknown} for {path.name}, which declares only "
                       f"{sorted(declared)}")
    return {k: v for k, v in params.items() if k in declared}


IOPUB_TIMEOUT_S = 120


def run(name: str, profile: str = "smoke", out_dir: Path | None = None) -> Path:
    import papermill

    path = notebook_path(name)
    out_dir = Path(out_dir or REPO_ROOT / "build" / profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / path.name
    params = parameters_for(name, profile)
    print(f"[pipeline] {path.name} (profile {profile}) -> {out}", flush=True)
    # iopub_timeout: how long to wait for a cell's outputs after it finished (nbclient's default, 4 s,
    # is too short for a busy 2-core machine; see notebooks/conftest.py for the same fix under nbval)
    papermill.execute_notebook(str(path), str(out), parameters=params, kernel_name="python3",
                               cwd=str(NOTEBOOKS), progress_bar=True, log_output=False,
                               iopub_timeout=IOPUB_TIMEOUT_S, raise_on_iopub_timeout=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebook")
    ap.add_argument("--profile", default="smoke")
    a = ap.parse_args(argv)
    run(a.notebook, a.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
