"""Run a notebook of the pipeline with a profile's parameters (what the Makefile calls).

    python -m lib.core.pipeline NOTEBOOK [--profile smoke]

``configs/<profile>.yaml`` holds ``common`` parameters and one section per notebook; papermill
injects them into the notebook's ``parameters`` cell. A key that the notebook does not declare is an
error (a typo would otherwise be ignored). The executed notebook goes to ``build/<profile>/``
(git-ignored; under ``$PRC_ROOT`` when set); the artifacts it writes are what the Makefile tracks.

Kept outputs: cells whose metadata says ``"keep_output": true`` (nbstripout leaves their outputs in
git) display headline numbers, and are tagged ``nbval-check-output`` so that ``make test`` compares
what they print now with what is committed. A run never rewrites ``notebooks/``: ``make all`` reports the
kept cells whose output would change (:func:`changed_kept_cells`, via :func:`lib.report.outputs.report`), and
``make refresh-results`` copies them from the executed smoke notebooks (the notebooks' own defaults, the
settings nbval executes) with :func:`keep_outputs`; a change that moves a headline fails nbval until then.
"""
from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from .. import REPO_ROOT
from .config import data_root, load_profile, require_inputs, stages
from .params import check_agreement, check_parameters

NOTEBOOKS = REPO_ROOT / "notebooks"


def notebook_path(name: str) -> Path:
    path = NOTEBOOKS / (name if name.endswith(".ipynb") else f"{name}.ipynb")
    if not path.exists():
        known = sorted(p.stem for p in NOTEBOOKS.glob("[0-9]*.ipynb"))
        raise FileNotFoundError(f"no notebook {path.name}; known: {known}")
    return path


def declared_parameters(path: Path) -> dict:
    path = Path(path)
    return dict(_declared(str(path), path.stat().st_mtime_ns))


@functools.lru_cache(maxsize=64)
def _declared(path: str, mtime_ns: int) -> tuple:
    import papermill

    return tuple((k, v["default"]) for k, v in papermill.inspect_notebook(path).items())


def _type_error(key: str, value, default_src: str) -> str | None:
    """Why ``value`` cannot stand where the notebook's default is the literal ``default_src`` (None: it can;
    a default that is not a plain literal is not checked)."""
    import ast

    try:
        default = ast.literal_eval(default_src)
    except (ValueError, SyntaxError):
        return None
    if default is None or value is None:
        return None
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) == isinstance(default, bool)
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float))
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    elif isinstance(default, dict):
        ok = isinstance(value, dict)
    elif isinstance(default, str):  # a name, or a list of names (e.g. rm_backbones: "policy" or [...])
        ok = isinstance(value, (str, list))
    else:
        ok = True
    return None if ok else f"{key}: {value!r} is a {type(value).__name__}, the notebook's default {default!r} a " \
                           f"{type(default).__name__}"


def parameters_for(name: str, profile: str, configs_dir=None) -> dict:
    """The parameters papermill injects into notebook ``name`` for ``profile``, checked against the
    notebook's declared parameters: unknown keys (in its section, or in ``common`` where no notebook
    declares them), unknown notebook sections and values of the wrong type are errors naming the file."""
    cfg = load_profile(profile, configs_dir)
    where = Path(configs_dir or REPO_ROOT / "configs") / f"{profile}.yaml"
    path = notebook_path(name)
    sections = cfg.get("notebooks") or {}
    known = {p.stem for p in NOTEBOOKS.glob("[0-9]*.ipynb")}
    if set(sections) - known:
        raise KeyError(f"{where}: section(s) {sorted(set(sections) - known)} name no notebook; known: {sorted(known)}")
    common = dict(cfg.get("common") or {})
    if "models" in common:  # names -> local folders / hub ids (lib.core.models.register), not a notebook parameter
        from . import models

        models.register(common.pop("models"), f"{where}: common.models")
    if common:
        everywhere = set().union(*(declared_parameters(NOTEBOOKS / f"{n}.ipynb") for n in sorted(known)))
        if set(common) - everywhere:
            raise KeyError(f"{where}: common key(s) {sorted(set(common) - everywhere)} are declared by no notebook")
    section = sections.get(path.stem) or {}
    if not isinstance(section, dict):
        raise ValueError(f"{where}: notebooks.{path.stem} must be a mapping, not a {type(section).__name__}")
    params = {**common, **section}
    declared = declared_parameters(path)
    unknown = sorted(set(section) - set(declared))
    if unknown:
        raise KeyError(f"{where} sets {unknown} for {path.name}, which declares only {sorted(declared)}")
    params = {k: v for k, v in params.items() if k in declared}  # common keys apply where declared
    bad = [e for k, v in params.items() if (e := _type_error(k, v, declared[k]))]
    if bad:
        raise TypeError(f"{where}, notebook {path.stem}: " + "; ".join(bad))
    check_parameters(_defaults(declared) | params, f"{where}, notebook {path.stem}")
    runs = stages(cfg)
    if path.stem not in runs:
        raise ValueError(f"{where}: profile {profile!r} runs only {list(runs)} (its 'stages'), not {path.stem}")
    if set(sections) - set(runs):
        raise ValueError(f"{where}: section(s) {sorted(set(sections) - set(runs))} belong to notebooks outside "
                         f"the profile's stages {list(runs)}")
    own = {n: s if isinstance(s := sections.get(n), dict) else {} for n in runs}
    check_agreement({n: _defaults(declared_parameters(NOTEBOOKS / f"{n}.ipynb")) | common | own[n] for n in runs},
                    str(where))
    return params


def _defaults(declared: dict) -> dict:
    """The notebook's declared defaults that are plain literals (as papermill reports their source)."""
    import ast

    out = {}
    for k, src in declared.items():
        try:
            out[k] = ast.literal_eval(src)
        except (ValueError, SyntaxError):
            pass
    return out


def apply_profile(namespace: dict, name: str, verbose: bool = True, configs_dir=None) -> dict:
    """Merge ``configs/<profile>.yaml`` into a notebook's variables when it runs outside the Makefile.

    Called by every notebook's setup cell with ``globals()``: on Colab or in Jupyter, setting
    ``profile = "paper"`` in the parameters cell then runs with the paper settings, not only into the
    paper folders. A parameter whose value still equals the notebook's default takes the profile's value;
    one the user changed by hand (or papermill injected, which is the same profile's value) is kept.
    Prints what it changed, then stops the notebook (FileNotFoundError) when an output of an earlier notebook it
    reads is missing, naming the file, its notebook and the `make artifacts` route (:func:`config.require_inputs`);
    returns ``{key: new value}``.
    """
    import ast

    path = notebook_path(name)
    params = parameters_for(path.stem, namespace.get("profile", KEEP_PROFILE), configs_dir)
    changed = {}
    for key, default_src in declared_parameters(path).items():
        if key not in params or key not in namespace:
            continue
        try:
            untouched = namespace[key] == ast.literal_eval(default_src)
        except (ValueError, SyntaxError):
            untouched = True
        if untouched and namespace[key] != params[key]:
            namespace[key] = changed[key] = params[key]
    if verbose and changed:
        print(f"[profile {namespace.get('profile')}] from configs/{namespace.get('profile')}.yaml: "
              + ", ".join(f"{k}={v!r}" for k, v in changed.items()), flush=True)
    # the values the notebook will run with, hand edits of the parameters cell included
    check_parameters({k: namespace[k] for k in declared_parameters(path) if k in namespace},
                     f"notebook {path.stem} (profile {namespace.get('profile', KEEP_PROFILE)})")
    require_inputs(path.stem, namespace.get("profile", KEEP_PROFILE), configs_dir=configs_dir)
    return changed


IOPUB_TIMEOUT_S = 120


KEEP_PROFILE = "smoke"  # its parameters are the notebooks' defaults (tests/test_project.py checks it)


def kept_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code" and c.get("metadata", {}).get("keep_output")]


def _kept_updates(executed: Path, source: Path) -> tuple[dict, dict]:
    """``(source notebook, {cell id: the executed cell's outputs})`` for the kept cells whose outputs differ."""
    import json

    src = json.loads(source.read_text(encoding="utf-8"))
    run_cells = {c.get("id"): c for c in json.loads(executed.read_text(encoding="utf-8"))["cells"]}
    new = {}
    for cell in kept_cells(src):
        if cell.get("id") not in run_cells:
            raise KeyError(f"{executed}: no cell with id {cell.get('id')!r} (kept in {source.name}); re-run it")
        outs = [{k: v for k, v in o.items() if k != "execution_count"} | (
            {"execution_count": None} if o.get("output_type") == "execute_result" else {})
            for o in run_cells[cell["id"]].get("outputs", [])]
        if outs != cell.get("outputs"):
            new[cell["id"]] = outs
    return src, new


def changed_kept_cells(executed: Path, source: Path) -> list[str]:
    """Ids of the kept cells of ``source`` whose outputs in ``executed`` differ from the committed ones."""
    return list(_kept_updates(executed, source)[1])


def keep_outputs(executed: Path, source: Path) -> int:
    """Copy the outputs of the kept cells (matched by cell id) of ``executed`` into ``source``.

    Execution counts are dropped (nbval ignores them). ``source`` is rewritten atomically, only when
    an output changed, and keeps its modification time: kept outputs are results, not inputs, so
    Make does not see a changed notebook. Returns the number of cells whose outputs changed.
    """
    import json
    import os

    from .io import write_text

    src, new = _kept_updates(executed, source)
    for cell in kept_cells(src):
        if cell["id"] in new:
            cell["outputs"] = new[cell["id"]]
    changed = len(new)
    if changed:
        st = source.stat()
        write_text(source, json.dumps(src, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
        os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))
    return changed


def run(name: str, profile: str = "smoke", out_dir: Path | None = None) -> Path:
    import papermill

    path = notebook_path(name)
    out_dir = Path(out_dir or data_root() / "build" / profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / path.name
    params = parameters_for(name, profile)
    print(f"[pipeline] {path.name} (profile {profile}) -> {out}", flush=True)
    # iopub_timeout: how long to wait for a cell's outputs after it finished (nbclient's default, 4 s,
    # is too short for a busy 2-core machine; see notebooks/conftest.py for the same fix under nbval)
    try:
        papermill.execute_notebook(str(path), str(out), parameters=params, kernel_name="python3",
                                   cwd=str(NOTEBOOKS), progress_bar=True, log_output=False,
                                   iopub_timeout=IOPUB_TIMEOUT_S, raise_on_iopub_timeout=True)
    except OSError as e:  # papermill saves the executed notebook after every cell: a full disk ends there
        import errno

        from .io import disk_full_error

        if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise disk_full_error(out, e) from e
        raise
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebook")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--write-params", metavar="FILE", help="write the notebook's parameters to FILE (only when they "
                    "changed: the Makefile's per-notebook dependency) instead of running it")
    a = ap.parse_args(argv)
    if a.write_params:
        write_params(a.notebook, a.profile, Path(a.write_params))
    else:
        run(a.notebook, a.profile)
    return 0


def write_params(name: str, profile: str, out: Path, configs_dir=None) -> bool:
    """Write the parameters papermill injects into ``name`` (checked, as JSON) to ``out`` when they differ from what
    is there; ``True`` when written. An unchanged file keeps its time, so Make re-runs only the notebooks whose own
    parameters changed."""
    import json

    from .io import write_text

    text = json.dumps(parameters_for(name, profile, configs_dir), indent=1, sort_keys=True, default=str) + "\n"
    if out.exists() and out.read_text(encoding="utf-8") == text:
        return False
    write_text(out, text)
    return True


if __name__ == "__main__":
    sys.exit(main())
