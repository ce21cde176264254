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


def load_profile(profile: str = "smoke", configs_dir: str | Path | None = None) -> dict:
    """The papermill parameters of a profile (``configs/<profile>.yaml``), checked for shape.

    The file must be a YAML mapping with only ``common`` and ``notebooks`` (both mappings); a
    ``common.profile`` must name the file's own profile (a copied config that still says ``smoke`` would
    otherwise write over the smoke artifacts). Every error names the file.
    """
    import yaml

    path = Path(configs_dir or REPO_ROOT / "configs") / f"{profile}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no profile {profile!r}: {path} does not exist")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    cfg = {} if cfg is None else cfg
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: the profile must be a mapping with 'common' and 'notebooks', not a "
                         f"{type(cfg).__name__}")
    unknown = sorted(set(cfg) - {"common", "notebooks", "stages"})
    if unknown:
        raise ValueError(f"{path}: unknown top-level key(s) {unknown}; allowed: 'common', 'notebooks', 'stages'")
    check_stages(path, cfg)
    for key in ("common", "notebooks"):
        if cfg.get(key) is not None and not isinstance(cfg[key], dict):
            raise ValueError(f"{path}: '{key}' must be a mapping, not a {type(cfg[key]).__name__}")
    named = (cfg.get("common") or {}).get("profile", profile)
    if named != profile:
        raise ValueError(f"{path}: common.profile is {named!r} but the file is profile {profile!r}: a copied config "
                         f"must name its own profile (its outputs go to data/processed/<profile>)")
    return cfg
