"""Research companion for "The Reward Model Selection Crisis in Personalized Alignment".

An importable package holding all logic; the notebooks in ``notebooks/`` call it. One sub-package per
pipeline stage, each importing only the stages below it (tests/test_layout.py)::

    core        config, pipeline, io, models, kvcache, schema, stats, progress   (imports no stage)
    data        01  LaMP, synthetic corpora, Pref-LaMP, preference sets
    rewards     02  features, pairs, heads, fitting, the zoo
    decoding    03  reward-guided decoding, its backends, greedy decoding
    evaluation  03-05  metrics, sweep, policy accuracy, selection of w, ICL, generation
    report      06  tables, plots, summary, sanity

The flat module names of earlier releases (``from lib import rgd``, ``import lib.evaluate``) still import,
with a FutureWarning that names the new place (:data:`MOVED`).
"""
import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# old flat module -> its place in the stage layout
MOVED = {
    "config": "core.config", "pipeline": "core.pipeline", "io": "core.io", "models": "core.models",
    "progress": "core.progress", "kvcache": "core.kvcache",
    "lamp": "data.lamp", "synthetic": "data.synthetic", "synthetic_prefs": "data.synthetic_prefs",
    "synthetic_scenes": "data.synthetic_scenes", "preflamp": "data.preflamp", "rejected": "data.rejected",
    "prefdata": "data.prefdata", "gencache": "data.gencache",
    "features": "rewards.features", "rm_checks": "rewards.rm_checks",
    "rgd": "decoding.rgd", "rgd_backends": "decoding.backends",
    "policy_acc": "evaluation.policy_accuracy", "selection": "evaluation.selection", "icl": "evaluation.icl",
    "evaluate": "evaluation.generation", "metrics": "evaluation.metrics", "sweep": "evaluation.sweep",
    "shard": "evaluation.shard",
    "results": "report.results", "plots": "report.plots", "sanity": "report.sanity",
}


def _moved(old: str) -> str:
    new = f"{__name__}.{MOVED[old]}"
    warnings.warn(f"{__name__}.{old} moved to {new}: import it from there", FutureWarning, stacklevel=3)
    return new


class _MovedModule(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import lib.<old>`` / ``from lib.<old> import x`` give the module at its new place (the same object);
    ``python -m lib.<old>`` runs the new module."""

    def find_spec(self, fullname, path=None, target=None):
        head, _, old = fullname.rpartition(".")
        if head != __name__ or old not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return importlib.import_module(_moved(spec.name.rpartition(".")[2]))

    def exec_module(self, module):
        pass

    def get_code(self, fullname):  # python -m lib.<old>
        new = _moved(fullname.rpartition(".")[2])
        return compile(f"import runpy\nrunpy.run_module({new!r}, run_name='__main__', alter_sys=True)\n",
                       f"<{fullname}, moved to {new}>", "exec")


if not any(isinstance(f, _MovedModule) for f in sys.meta_path):
    sys.meta_path.append(_MovedModule())


def __getattr__(name: str):  # from lib import <old>
    if name in MOVED:
        return importlib.import_module(_moved(name))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MOVED", "REPO_ROOT"]
