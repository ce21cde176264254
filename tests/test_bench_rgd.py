"""The GPU benchmark command the README documents (section "Speed") runs: here on a CPU, with ``--tiny`` (the same
Qwen2.5 shape at a tiny size) and fewer repetitions, so that every table's code path runs in seconds. Its numbers
measure nothing; the command's options and tables are what is checked before a GPU is lent."""
from __future__ import annotations

import importlib.util
import shlex

import numpy as np
import pandas as pd
import pytest

from lib import REPO_ROOT
from lib.core import workload

# fewer and shorter runs of every table (later options win in argparse): the code paths stay the same
SMALL = ["--batch", "1", "2", "--tf-batch", "1", "2", "--tf-responses", "4", "--tf-resp-len", "4", "--mr-queries", "2",
         "--mr-batch", "4", "8", "--new-tokens", "3", "--bk-tokens", "2", "--bk-reps", "1", "--long-prompts", "60", "200",
         "--long-tokens", "2", "--mr-tokens", "2", "--mr-rms", "2", "--mr-ws", "0.5", "1.0"]


def readme_command() -> list[str]:
    """The README's bench_rgd.py command with --random-arch, as argv (without ``python scripts/bench_rgd.py``)."""
    speed = (REPO_ROOT / "README.md").read_text().split("\n## Speed", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in speed.split("```bash")[1:]]
    cmd = next(b for b in blocks if "--random-arch" in b)
    argv = shlex.split(" ".join(line.rstrip("\\").strip() for line in cmd.strip().splitlines()))
    assert argv[:2] == ["python", "scripts/bench_rgd.py"], argv
    return argv[2:]


def test_the_documented_gpu_command_runs_tiny_on_a_cpu(tmp_path):
    argv = readme_command()
    assert argv[argv.index("--device") + 1] == "cuda" and "--out" in argv
    argv[argv.index("--device") + 1] = "cpu"
    argv[argv.index("--out") + 1] = str(tmp_path)
    spec = importlib.util.spec_from_file_location("bench_rgd", REPO_ROOT / "scripts" / "bench_rgd.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(argv + ["--tiny"] + SMALL)
    arch = argv[argv.index("--random-arch") + 1]
    out = pd.read_csv(tmp_path / f"bench_rgd_{arch}-tiny_cpu.csv")
    assert set(out.table) == {"throughput", "bookkeeping", "long_prompt", "teacher_forced", "multi_rm", "estimate"}
    tf = out[out.table == "teacher_forced"]
    assert len(tf) == 2 and (tf.responses_per_s > 0).all()  # teacher forcing appends the end token, as notebook 04
    assert set(out[out.table == "throughput"].method) >= {"hf_greedy", "plain", "shared", "separate"}
    check_estimate(out, argv[argv.index("--estimate-profile") + 1], int(argv[argv.index("--gpus") + 1]))


def check_estimate(out: pd.DataFrame, profile: str, gpus: int) -> None:
    """The estimate table: one row per notebook 01-05 and a total, finite positive hours, only 05 faster on
    ``gpus`` GPUs, and each notebook's hours the counted work over the rates of the tables of the same run."""
    est = out[out.table == "estimate"].set_index("notebook")
    h1, hn = est.hours_1gpu.astype(float), est[f"hours_{gpus}gpu"].astype(float)
    assert list(est.index) == [*workload.COUNTED, "total"]
    assert np.isfinite(h1).all() and (h1 > 0).all() and (hn > 0).all() and (hn <= h1).all()
    assert (hn < h1).tolist() == [nb in workload.SHARDED or nb == "total" for nb in est.index]
    assert h1["total"] == pytest.approx(h1.drop("total").sum())
    thr, mr, tf = (out[out.table == t] for t in ("throughput", "multi_rm", "teacher_forced"))
    rates = {"greedy": thr[thr.method == "plain"].sort_values("batch").tokens_per_s.iloc[-1],
             "rgd": mr[mr["mode"] == "rows = rm x w x query"].sort_values("rows_per_batch").tokens_per_s.iloc[-1],
             "teacher_forced": tf.sort_values("batch").responses_per_s.iloc[-1]}
    parts = workload.count_work(workload.profile_params(profile))
    for nb in workload.COUNTED:
        mine = [p for p in parts if p["notebook"] == nb]
        assert h1[nb] == pytest.approx(sum(p["units"] / rates[p["rate"]] for p in mine) / 3600)
