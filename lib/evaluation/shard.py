"""Shard per-user work across processes or GPUs with accelerate, merge deterministically.

Launch any script that calls :func:`run_sharded` with ``accelerate launch --multi_gpu
--num_processes N script.py ...`` (on a CPU-only machine the same command starts N CPU processes
talking over gloo) or with ``torchrun --nproc_per_node N``; run without a launcher it is one process.

* Units of work (users, or ids of fixed user blocks such as scripts/shard_generate.py's ``<task>|<block>``)
  are sorted and split into contiguous chunks,
  exactly as ``PartialState.split_between_processes`` splits a list.
* Each process writes its rows to ``<out>.shard<rank>-of-<N>.jsonl`` atomically.
* After a barrier, rank 0 merges all shards sorted by ``sort_by`` (a stable sort; rows of one user
  stay in the order the work function produced them) and writes ``<out>`` atomically.

Because every unit of work is computed the same way whatever the shard (lib/evaluation/generation.py batches
within a fixed block of users, and the blocks are the units), the merged file of N processes is
byte-identical to that of one process.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from ..core.io import read_jsonl, write_jsonl


def state():
    """The accelerate process state (CPU processes over gloo when no GPU is present)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def shard_users(users, rank: int, world: int) -> list[str]:
    """The contiguous chunk of the sorted users that process ``rank`` of ``world`` handles."""
    users = sorted(set(map(str, users)))
    per, extra = divmod(len(users), world)
    start = rank * per + min(rank, extra)
    return users[start : start + per + (1 if rank < extra else 0)]


def shard_path(out, rank: int, world: int) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}.shard{rank}-of-{world}{out.suffix}")


def _clean(v):
    return None if isinstance(v, float) and math.isnan(v) else v


def merge_shards(out, world: int, sort_by=("user",)) -> list[dict]:
    """Read the ``world`` shard files of ``out``, sort rows by ``sort_by`` and write ``out``."""
    rows = []
    for r in range(world):
        p = shard_path(out, r, world)
        if not p.exists():
            raise FileNotFoundError(f"shard {r} of {world} is missing: {p}")
        rows += read_jsonl(p)
    for i, row in enumerate(rows):
        missing = [c for c in sort_by if c not in row]
        if missing:
            raise KeyError(f"merge_shards: row {i} has no column(s) {missing}")
    rows.sort(key=lambda row: tuple(str(row[c]) for c in sort_by))
    write_jsonl(out, rows)
    return rows


def run_sharded(work: Callable[[list[str]], list[dict]], units, out, sort_by=("user",), st=None) -> list[dict]:
    """Run ``work(my_units) -> rows`` on this process's units (users, or ids of user blocks); rank 0
    merges; every rank returns the merged rows."""
    st = st or state()
    mine = shard_users(units, st.process_index, st.num_processes)
    rows = [{k: _clean(v) for k, v in r.items()} for r in work(mine)]
    write_jsonl(shard_path(out, st.process_index, st.num_processes), rows)
    st.wait_for_everyone()
    if st.is_main_process:
        merge_shards(out, st.num_processes, sort_by)
    st.wait_for_everyone()
    return read_jsonl(out)
