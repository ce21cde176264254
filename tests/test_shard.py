"""Sharding users across processes: 2 CPU processes (accelerate launch, gloo) == 1 process, byte for byte."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from _tiny import query, tiny_lm, tiny_tokenizer

from lib import shard
from lib.io import read_jsonl, write_jsonl

REPO = Path(__file__).resolve().parents[1]


def test_shard_users_partition():
    users = [f"u{i}" for i in (5, 3, 9, 1, 7)] + ["u3"]
    parts = [shard.shard_users(users, r, 3) for r in range(3)]
    assert parts == [["u1", "u3"], ["u5", "u7"], ["u9"]]
    assert shard.shard_users(["a"], 1, 2) == []


def test_merge_shards_sorted_and_missing(tmp_path):
    out = tmp_path / "m.jsonl"
    write_jsonl(shard.shard_path(out, 0, 2), [{"user": "b", "x": 1}])
    with pytest.raises(FileNotFoundError, match="shard 1 of 2"):
        shard.merge_shards(out, 2)
    write_jsonl(shard.shard_path(out, 1, 2), [{"user": "a", "x": 2}, {"user": "a", "x": 0}])
    assert [r["x"] for r in shard.merge_shards(out, 2)] == [2, 0, 1]  # by user, stable within a user


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
    tok = tiny_tokenizer()
    model = tiny_lm(tok)
    mdir = tmp_path / "tiny-llama"
    model.save_pretrained(mdir)
    tok.save_pretrained(mdir)
    qs = [query(f"q{i}", user=f"user{i % 5}", rule="question" if i % 2 else None, n_profile=3) for i in range(10)]
    write_jsonl(tmp_path / "queries.jsonl", qs)
    args = ["scripts/shard_generate.py", "--model-dir", str(mdir), "--queries", str(tmp_path / "queries.jsonl"),
            "--icl-ks", "1,2", "--max-new-tokens", "5", "--batch-size", "4", "--user-block", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}

    def launch(prefix, tag):
        out = tmp_path / tag / "gen.jsonl"
        cmd = prefix + args + ["--out", str(out), "--cache-dir", str(tmp_path / tag / "cache")]
        r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        return out

    one = launch([sys.executable], "one")
    two = launch([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                  "--main_process_port", str(_free_port())], "two")
    rows = read_jsonl(one)
    assert len(rows) == 10 * 3
    shards = [read_jsonl(shard.shard_path(two, r, 2)) for r in range(2)]
    # blocks [user0, user1] [user2, user3] [user4]: process 0 takes two blocks, process 1 one
    assert {r["user"] for r in shards[0]} == {"user0", "user1", "user2", "user3"}
    assert {r["user"] for r in shards[1]} == {"user4"}
    assert one.read_bytes() == two.read_bytes()
