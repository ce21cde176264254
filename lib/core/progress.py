"""Progress bars for long loops: one place that decides when a bar is drawn.

``bar(iterable, progress=...)`` is ``tqdm.auto.tqdm`` (a widget in Jupyter, text in a terminal) with one rule:
a bar is drawn when ``progress`` is true and the environment variable ``TQDM_DISABLE`` is unset or
``0``/``false``/``no``/empty. `make test-notebooks` sets ``TQDM_DISABLE=1``.

The variable is read here because tqdm honours it in a terminal but not in a notebook: ``tqdm.notebook``
always passes an explicit ``disable`` to its parent (tqdm 4.70), which overrides the environment default.
Under nbval every bar then became an ipywidget, thousands of comm messages in one notebook cell, more than
the kernel's IOPub queue holds; the dropped "idle" message failed a CI run
("Timeout of 120 seconds exceeded waiting for output" after notebook 02's feature cell).
"""
from __future__ import annotations

import os

from tqdm.auto import tqdm


def disabled_by_env() -> bool:
    """Whether ``TQDM_DISABLE`` asks for no progress bars."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


def bar(iterable=None, *, progress: bool = True, **kwargs) -> tqdm:
    """A ``tqdm.auto`` bar over ``iterable`` (or with ``total=``), off when ``progress`` is false or
    ``TQDM_DISABLE`` is set."""
    if "disable" in kwargs:
        raise TypeError("pass progress=..., not disable=: lib.core.progress.bar decides from progress and TQDM_DISABLE")
    return tqdm(iterable, disable=not progress or disabled_by_env(), **kwargs)
