"""Research companion for "The Reward Model Selection Crisis in Personalized Alignment".

Small importable package holding all logic; the notebooks in ``notebooks/`` only call it.
"""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

__all__ = ["REPO_ROOT"]
