"""Progress bars: ``TQDM_DISABLE=1`` (set by `make test-notebooks`) silences every bar the library draws.

A CI run failed when lib passed ``disable=not progress`` to tqdm, which overrides that variable: in a
Jupyter kernel each bar became an ipywidget, thousands of comm messages per notebook cell, more than the
IOPub queue holds, and nbval lost the kernel's "idle" message."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lib.core.progress import bar

ROOT = Path(__file__).resolve().parents[1]


def _disabled(env_value: str | None, progress: bool) -> bool:
    """``bar(range(3), progress=...).disable`` in a fresh interpreter (tqdm reads TQDM_* at import time)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQDM_")}
    if env_value is not None:
        env["TQDM_DISABLE"] = env_value
    code = f"from lib.core.progress import bar; print(bar(range(3), progress={progress}).disable)"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"


@pytest.mark.parametrize("env_value, progress, disabled", [
    (None, True, False),   # a user running a notebook sees the bar
    (None, False, True),   # progress=False silences it
    ("1", True, True),     # TQDM_DISABLE=1 wins over progress=True
    ("1", False, True),
    ("0", True, False),    # like an unset variable
])
def test_bar_honours_progress_and_tqdm_disable(env_value, progress, disabled):
    assert _disabled(env_value, progress) is disabled


def test_bar_refuses_disable_keyword():
    with pytest.raises(TypeError, match="progress="):
        bar(range(3), disable=True)


def _comm_messages(env_value: str | None) -> int:
    """Comm (widget) messages a Jupyter kernel sends while a lib bar runs over 50 items."""
    from jupyter_client.manager import start_new_kernel

    env = {k: v for k, v in os.environ.items() if not k.startswith("TQDM_")}
    if env_value is not None:
        env["TQDM_DISABLE"] = env_value
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT), env=env)
    try:
        mid = kc.execute("from lib.core.progress import bar\nfor _ in bar(range(50), progress=True, mininterval=0): pass")
        n = 0
        while True:
            msg = kc.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") != mid:
                continue
            n += msg["msg_type"].startswith("comm_")
            if msg["msg_type"] == "error":
                raise AssertionError(msg["content"]["evalue"])
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return n
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_no_widget_messages_in_a_kernel_under_tqdm_disable():
    assert _comm_messages(None) > 0  # the control: without the variable the bar is a widget
    assert _comm_messages("1") == 0


def test_only_lib_progress_imports_tqdm():
    """Every lib bar goes through lib.core.progress.bar, so none can bypass TQDM_DISABLE."""
    offenders = []
    for path in sorted((ROOT / "lib").rglob("*.py")):
        if path.name == "progress.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno}" for n in names if n.split(".")[0] == "tqdm"]
    assert not offenders, f"import lib.core.progress.bar instead of tqdm: {offenders}"
