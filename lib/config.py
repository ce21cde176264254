"""Profiles (configs/<profile>.yaml) and the artifact layout every notebook shares.

Layout for a profile ``P`` under the data root (the repository, or ``$PRC_ROOT``; all git-ignored
except figures/):

    data/raw/                 immutable downloads (LaMP) and the synthetic LaMP-format corpus
    data/processed/P/preflamp Pref-LaMP JSONL + manifest (notebook 01)
    data/processed/P/prefsets multi-user preference sets in the pair schema (notebook 02)
    data/processed/P/rms      trained reward models + RM accuracy tables (notebook 02)
    data/processed/P/rgd      decoding outputs (notebook 03)
    data/processed/P/eval     policy accuracy and generation results (notebooks 04, 05)
    data/cache/               feature caches, generation caches
    figures/P/                every figure (PNG + PDF) and table (CSV, Markdown, LaTeX)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from . import REPO_ROOT


def data_root() -> Path:
    """Where data/ and figures/ live: ``$PRC_ROOT`` when set (``make test-notebooks`` points it at a
    temporary copy, so a test run never rewrites committed figures), else the repository."""
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
        return self.root / "figures" / self.profile


def paths(profile: str = "smoke", root: str | Path | None = None) -> Paths:
    return Paths(profile, Path(root) if root else data_root())


def load_profile(profile: str = "smoke") -> dict:
    """The papermill parameters of a profile (configs/<profile>.yaml)."""
    import yaml

    path = REPO_ROOT / "configs" / f"{profile}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no profile {profile!r}: {path} does not exist")
    return yaml.safe_load(path.read_text()) or {}
