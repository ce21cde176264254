"""The raw files of ``make test-paper-dry``: LaMP and the three preference sets, small, in the layouts the paper
profile reads (configs/paper-dry.yaml points its loaders here).

Under ``ROOT/data/raw/``:

* ``lamp/``: LaMP-4, -5 and -7 dev files in the official layout with real-data properties
  (tests/real_lamp_fixture.py), placed by hand: the profile keeps the paper's ``download: true``, which uses valid
  files already present instead of fetching them (lib/data/lamp.py).
* ``prefsets/tldr/``: ``openai/summarize_from_feedback`` config ``comparisons`` records (the synthetic stand-ins of
  lib/data/synthetic_prefs.py, Reddit posts in the ``train`` and ``validation`` files) plus the release's real
  quirks: validation records from CNN/DM (``split: "valid2"``, ``info.article`` and ``info.site``, no post, no
  subreddit) and one comparison whose summary text is empty (skipped and counted by the loader).
* ``prefsets/prism/``: ``HannahRoseKirk/prism-alignment`` ``utterances`` rows, plus turns with one rated response
  (no pair: skipped and counted).
* ``prefsets/personalllm/``: ``namkoong-lab/PersonalLLM`` rows (parquet) with ``response_<j>_model`` columns
  beside the reward-model score columns (the loader must not take them for reward models).

    python tests/paper_dry_fixture.py ROOT [--users N]
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.core.io import read_jsonl, write_jsonl
from lib.data import synthetic_prefs

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_lamp_fixture  # noqa: E402

ARTICLES = ("The city council approved a new budget for the river bridge on Tuesday after months of debate, and "
            "officials said work on the harbour will start next spring.",
            "A storm closed the museum and the library for two days; volunteers from the bakery and the school "
            "helped clear the garden, the mayor said.",
            "Scientists launched a satellite to watch the coral reef and the volcano, a project that took the team "
            "of the startup five years.")


def _cnndm_record(rng: random.Random, i: int, worker: str, texts: tuple[str, str]) -> dict:
    """A CNN/DM comparison as the hub release has them: an article, a site, no post and no subreddit."""
    article = ARTICLES[i % len(ARTICLES)]
    return {"info": {"id": f"cnndm-{i:04d}", "post": None, "title": None, "subreddit": None, "site": "dailymail",
                     "article": article},
            "summaries": [{"text": t, "policy": f"ref{j}", "note": None} for j, t in enumerate(texts)],
            "choice": rng.randrange(2), "worker": worker, "batch": "batch20", "split": "valid2",
            "extra": {"confidence": rng.randint(1, 9)}}


def add_tldr_quirks(folder: Path, seed: int = 0, per_worker: int = 2) -> dict:
    """Append CNN/DM validation records (``per_worker`` for each of the first half of the workers) and one
    comparison with an empty summary to ``folder/comparisons/validation.jsonl``; returns the counts added."""
    rng = random.Random(f"tldr-quirks-{seed}")
    f = folder / "comparisons" / "validation.jsonl"
    rows = read_jsonl(f)
    workers = sorted({r["worker"] for r in read_jsonl(folder / "comparisons" / "train.jsonl") + rows})
    added, i = [], 0
    for w in workers[: max(1, len(workers) // 2)]:
        for _ in range(per_worker):
            texts = (f"The {rng.choice(['council', 'mayor', 'team'])} approved the plan.",
                     f"Officials said work will start {rng.choice(['next spring', 'in May', 'soon'])} after a debate.")
            added.append(_cnndm_record(rng, i, w, texts))
            i += 1
    empty = _cnndm_record(rng, i, workers[0], ("", "A storm closed the museum."))
    write_jsonl(f, rows + added + [empty])
    return {"cnndm": len(added), "empty_summary": 1}


def add_prism_quirks(folder: Path, seed: int = 0) -> int:
    """Append one turn with a single rated response for every other user to ``folder/utterances.jsonl``."""
    rng = random.Random(f"prism-quirks-{seed}")
    f = folder / "utterances.jsonl"
    rows = read_jsonl(f)
    users = sorted({r["user_id"] for r in rows})[::2]
    added = []
    for u in users:
        last = max((r for r in rows if r["user_id"] == u), key=lambda r: (r["conversation_id"], r["turn"]))
        added.append({**last, "utterance_id": f"ut-single-{u}", "interaction_id": f"int-single-{u}",
                      "turn": last["turn"] + 1, "within_turn_id": 0, "user_prompt": "Thanks, one more thing?",
                      "model_response": "Of course, happy to help.", "score": rng.randint(1, 100), "if_chosen": True})
    write_jsonl(f, rows + added)
    return len(added)


def write_prefsets(root, seed: int = 0, n_users: int = 8, pairs_per_user: int = 6, n_prompts: int = 12) -> dict:
    """The three preference sets under ``root`` (``{name: folder}``), quirks included."""
    root = Path(root)
    out = synthetic_prefs.write_synthetic_prefsets(root, seed=seed, n_users=n_users, pairs_per_user=pairs_per_user,
                                                   n_prompts=n_prompts)
    add_tldr_quirks(out["tldr"], seed)
    add_prism_quirks(out["prism"], seed)
    return out


def write_all(root, seed: int = 0, lamp_users: int = 12, pref_users: int = 8) -> Path:
    """LaMP (``lamp_users`` per task) and the preference sets under ``root/data/raw``; returns that folder."""
    raw = Path(root) / "data" / "raw"
    real_lamp_fixture.write_real_lamp(raw / "lamp", n_users=lamp_users, seed=seed)
    write_prefsets(raw / "prefsets", seed=seed, n_users=pref_users)
    return raw


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", help="the data root (DATA_ROOT): files go under ROOT/data/raw")
    ap.add_argument("--lamp-users", type=int, default=12, help="LaMP users per task")
    ap.add_argument("--pref-users", type=int, default=8, help="TL;DR workers and PRISM participants")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    raw = write_all(a.root, a.seed, a.lamp_users, a.pref_users)
    print(f"[paper-dry fixture] LaMP ({a.lamp_users} users per task) and TL;DR / PRISM / PersonalLLM under {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
