"""Profiles (configs/<profile>.yaml) and the artifact layout every notebook shares.

Layout for a profile ``P`` under the data root (the repository, or ``$PRC_ROOT``; all git-ignored
except figures/, the committed results):

    data/raw/                 immutable downloads (LaMP) and the synthetic LaMP-format corpus
    data/processed/P/preflamp Pref-LaMP JSONL + manifest (notebook 01)
    data/processed/P/prefsets multi-user preference sets in the pair schema, with a manifest of the
                              records the loader skipped, by cause (notebook 02)
    data/processed/P/rms      trained reward models + RM accuracy tables (notebook 02)
    data/processed/P/rgd      decoding outputs (notebook 03)
    data/processed/P/eval     policy accuracy and generation results (notebooks 04, 05)
    data/cache/               feature caches, generation caches
    build/P/                  the executed notebooks (papermill) and build/P/figures/: this run's every figure
                              (PNG + PDF) and table (CSV, Markdown, LaTeX), written by notebook 06
    figures/P/                the committed results: a copy of a run's build/P/figures/ (make refresh-results)
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import REPO_ROOT


def data_root() -> Path:
    """Where data/, build/ and figures/ live: ``$PRC_ROOT`` when set (``make test-notebooks`` points it at a
    temporary copy), else the repository."""
    return Path(os.environ["PRC_ROOT"]).resolve() if os.environ.get("PRC_ROOT") else REPO_ROOT


@dataclass(frozen=True)
class Paths:
    profile: str
    root: Path = field(default_factory=data_root)

    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def processed(self) -> Path:
        return self.root / "data" / "processed" / self.profile

    @property
    def preflamp(self) -> Path:
        return self.processed / "preflamp"

    @property
    def prefsets(self) -> Path:
        return self.processed / "prefsets"

    @property
    def rms(self) -> Path:
        return self.processed / "rms"

    @property
    def rgd(self) -> Path:
        return self.processed / "rgd"

    @property
    def eval(self) -> Path:
        return self.processed / "eval"

    @property
    def cache(self) -> Path:
        return self.root / "data" / "cache"

    @property
    def figures(self) -> Path:
        """This run's tables and figures (notebook 06 writes them; git-ignored)."""
        return self.root / "build" / self.profile / "figures"

    @property
    def results(self) -> Path:
        """The committed results of the profile (``make refresh-results`` copies :attr:`figures` here)."""
        return self.root / "figures" / self.profile


def resolve_path(kw: dict, root) -> dict:
    """Loader kwargs with a relative ``path`` read against the data root (the repository, or ``$PRC_ROOT``):
    a profile's ``path: data/raw/tldr/batch13.json`` names the same file from Make, Jupyter and the tests."""
    path = kw.get("path")
    if path is None or Path(path).is_absolute():
        return dict(kw)
    return {**kw, "path": str(Path(root) / path)}


def paths(profile: str = "smoke", root: str | Path | None = None) -> Paths:
    return Paths(profile, Path(root) if root else data_root())


STAGES = ("01_build_pref_lamp", "02_train_reward_models", "03_reward_guided_decoding", "04_policy_accuracy",
          "05_generation", "06_figures_tables")
STAGE_SHAPES = (STAGES, ("02_train_reward_models", "04_policy_accuracy", "06_figures_tables"))
STAGES_LINE = re.compile(r"^stages: *\[([^\]]*)\]", re.M)  # what the Makefile's sed reads


def check_stages(path: Path, cfg: dict) -> None:
    """A profile's optional ``stages``: every notebook (default), or 02, 04 and 06 only (preference sets without
    Pref-LaMP: no LaMP corpus, no decoding side by side, no ROUGE). Written on one line, as the Makefile reads it."""
    if "stages" not in cfg:
        return
    stages = cfg["stages"]
    if not isinstance(stages, list) or tuple(stages) not in STAGE_SHAPES:
        raise ValueError(f"{path}: 'stages' must be one of {[list(s) for s in STAGE_SHAPES]}, not {stages!r}")
    line = STAGES_LINE.search(path.read_text(encoding="utf-8"))
    if not line or [s.strip() for s in line.group(1).split(",")] != stages:
        raise ValueError(f"{path}: write 'stages' on one line as stages: [a, b, c] (the Makefile reads that line)")


def stages(cfg: dict) -> tuple[str, ...]:
    """The notebooks a loaded profile runs, in order."""
    return tuple(cfg.get("stages") or STAGES)


def _read_profile(path: Path) -> dict:
    """One profile file as written: a YAML mapping with only ``common``, ``notebooks``, ``stages`` and ``extends``."""
    import yaml

    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    cfg = {} if cfg is None else cfg
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: the profile must be a mapping with 'common' and 'notebooks', not a "
                         f"{type(cfg).__name__}")
    unknown = sorted(set(cfg) - {"common", "notebooks", "stages", "extends"})
    if unknown:
        raise ValueError(f"{path}: unknown top-level key(s) {unknown}; allowed: 'common', 'notebooks', 'stages', "
                         "'extends'")
    for key in ("common", "notebooks"):
        if cfg.get(key) is not None and not isinstance(cfg[key], dict):
            raise ValueError(f"{path}: '{key}' must be a mapping, not a {type(cfg[key]).__name__}")
    sections = cfg.get("notebooks") or {}
    bad = [n for n, sec in sections.items() if sec is not None and not isinstance(sec, dict)]
    if bad:
        raise ValueError(f"{path}: notebooks.{bad[0]} must be a mapping, not a {type(sections[bad[0]]).__name__}")
    models = (cfg.get("common") or {}).get("models")
    if isinstance(models, dict):  # a folder written ./x or ../x is read against this file's folder, not the cwd
        cfg["common"]["models"] = {n: str((path.parent / t).resolve()) if isinstance(t, str) and t.startswith(
            ("./", "../")) else t for n, t in models.items()}
    return cfg


def merge_profiles(base: dict, child: dict) -> dict:
    """``child`` over ``base`` (a profile that ``extends`` another): ``common`` key by key, each notebook's section
    parameter by parameter (a parameter the child sets replaces the base's whole value, a mapping included),
    ``stages`` replaced."""
    out = {"common": {**(base.get("common") or {}), **(child.get("common") or {})}, "notebooks": {}}
    for nb in dict.fromkeys([*(base.get("notebooks") or {}), *(child.get("notebooks") or {})]):
        out["notebooks"][nb] = {**((base.get("notebooks") or {}).get(nb) or {}),
                                **((child.get("notebooks") or {}).get(nb) or {})}
    if "stages" in base or "stages" in child:
        out["stages"] = child.get("stages", base.get("stages"))
    return out


def load_profile(profile: str = "smoke", configs_dir: str | Path | None = None) -> dict:
    """The papermill parameters of a profile (``configs/<profile>.yaml``), checked for shape.

    The file must be a YAML mapping with only ``common`` and ``notebooks`` (both mappings), an optional
    ``stages`` line and an optional ``extends: <profile>``: the profile is then that one with this file's
    settings over it (:func:`merge_profiles`; configs/paper-dry.yaml is configs/paper.yaml with its sizes cut).
    A profile that extends another cannot itself be extended (the Makefile tracks one parent), and restates
    the parent's ``stages`` line when it has one (the Makefile reads the profile's own file). A
    ``common.profile`` must name the file's own profile (a copied config that still says ``smoke`` would
    otherwise write over the smoke artifacts). In ``common.models``, a folder written ``./x`` or ``../x`` is read
    against the profile file's folder. Every error names the file.
    """
    path = Path(configs_dir or REPO_ROOT / "configs") / f"{profile}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no profile {profile!r}: {path} does not exist")
    cfg = _read_profile(path)
    parent = cfg.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str) or not (path.parent / f"{parent}.yaml").exists() or parent == profile:
            raise ValueError(f"{path}: extends {parent!r}, which names no other profile in {path.parent}")
        base_path = path.parent / f"{parent}.yaml"
        base = _read_profile(base_path)
        if "extends" in base:
            raise ValueError(f"{path}: extends {parent!r}, which itself extends {base['extends']!r}: one level only "
                             f"(the Makefile re-runs notebooks when {base_path.name} changes, not its parent)")
        if "stages" in base and "stages" not in cfg:
            raise ValueError(f"{path}: {base_path.name} has a 'stages' line; restate it here (the Makefile reads "
                             "this file's own stages line)")
        check_stages(base_path, base)
        cfg = merge_profiles(base, cfg)
    check_stages(path, cfg)
    named = (cfg.get("common") or {}).get("profile", profile)
    if named != profile:
        raise ValueError(f"{path}: common.profile is {named!r} but the file is profile {profile!r}: a copied config "
                         f"must name its own profile (its outputs go to data/processed/<profile>)")
    return cfg


# What each notebook writes that Make tracks (the Makefile's targets, under data/processed/<profile>/) and the make
# target that builds it; tests/test_inputs.py checks both against the Makefile.
OUTPUTS = {
    "01_build_pref_lamp": ("preflamp/manifest.json", "data"),
    "02_train_reward_models": ("rms/index.csv", "rms"),
    "03_reward_guided_decoding": ("rgd/decodes.csv", "rgd"),
    "04_policy_accuracy": ("eval/policy_accuracy.csv", "policy-accuracy"),
    "05_generation": ("eval/generations.csv", "generation"),
}
# The notebooks whose outputs a notebook reads (the Makefile's prerequisites, as direct reads); a profile's stages
# drop the ones it does not run (tldr-real: no 01, 03 or 05).
INPUTS = {
    "02_train_reward_models": ("01_build_pref_lamp",),
    "03_reward_guided_decoding": ("01_build_pref_lamp", "02_train_reward_models"),
    "04_policy_accuracy": ("01_build_pref_lamp", "02_train_reward_models"),
    "05_generation": ("01_build_pref_lamp", "02_train_reward_models", "04_policy_accuracy"),
    "06_figures_tables": STAGES[:5],
}
# What `make artifacts` packs when they exist (scripts/pack_artifacts.py): the outputs of every notebook but 06, so that
# notebooks 02-06 can each start from an archive of a run that got that far.
ARCHIVED = STAGES[:5]


def missing_inputs(name: str, profile: str, root=None, configs_dir=None) -> list[str]:
    """Why notebook ``name`` cannot start under ``profile``: one line per output of an earlier notebook that is not
    there (the file, the notebook that writes it, how to get it), and Pref-LaMP text files its manifest lists but an
    archive of a real-LaMP build left out. Empty: every input is in place."""
    P, runs = paths(profile, root), stages(load_profile(profile, configs_dir))
    out = []
    for nb in (n for n in INPUTS.get(name, ()) if n in runs):
        rel, target = OUTPUTS[nb]
        if (P.processed / rel).is_file():
            continue
        how = f"run notebook {nb} first in this environment (`make {target} PROFILE={profile}`)"
        if nb in ARCHIVED:
            how += (f", or place the archive of a run's outputs (`make artifacts PROFILE={profile}` on a machine "
                    f"that ran notebooks 01-{nb[:2]} writes build/artifacts-{profile}.tar.gz) and unpack it with "
                    f"`tar xzf artifacts-{profile}.tar.gz` in {P.root}")
        out.append(f"{P.processed / rel} is missing: notebook {nb} writes it; {how}")
    manifest = P.preflamp / "manifest.json"
    if "01_build_pref_lamp" in INPUTS.get(name, ()) and "01_build_pref_lamp" in runs and manifest.is_file():
        try:
            listed = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{manifest}: no readable 'files' entry ({type(e).__name__}); rebuild it with notebook "
                             f"01_build_pref_lamp (`make data PROFILE={profile}`)") from None
        left = sorted(f for f in listed if not (P.preflamp / f).is_file())
        if left:
            out.append(f"{P.preflamp}: {left} missing although {manifest.name} lists them (an archive of a real-LaMP "
                       f"build leaves LaMP's text out: its license forbids redistribution); rebuild them with notebook "
                       f"01_build_pref_lamp (`make data PROFILE={profile}`)")
    return out


def require_inputs(name: str, profile: str, root=None, configs_dir=None) -> None:
    """Stop notebook ``name`` before any work when an output of an earlier notebook is missing, with a
    FileNotFoundError naming each missing file, the notebook that writes it and the `make artifacts` route."""
    missing = missing_inputs(name, profile, root, configs_dir)
    if missing:
        raise FileNotFoundError(f"notebook {name} (profile {profile}) cannot start:\n  - " + "\n  - ".join(missing))
