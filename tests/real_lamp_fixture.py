"""A small LaMP corpus in the official layout with the properties of real LaMP files.

Unlike the synthetic corpus (lib/data/synthetic.py), and like the files users download:

* every question has its own profile (one question per user); ids as in LaMP: question ``"4100"``,
  its profile items ``"41000"``, ``"41001"``, ...;
* profile sizes vary from 2 to 12 (users 0 and 1 have only 2 and 3 items);
* neighbouring users share items verbatim: user ``2k+1`` holds user ``2k``'s headline/title/tweet for
  an almost identical article (user 3 shares two);
* user 1's gold output is empty (LaMP-5: blank), user 2's input is about 30,000 characters long;
* unicode (accents, emoji) and text lengths from a few words to many sentences; LaMP-7 profile items
  carry only ``text`` and ``id``; every input starts with the task's instruction.

With ``min_profile=2`` at least 6 of the 8 default users per task have 4 or more profile items, so a
build keeps at least 4 users with 2 or more pairs after the documented drops.

With ``realistic=True`` (``--realistic``) the corpus has the sizes of the real dev files instead, for measuring wall
time at a profile's documented size: profiles of 20-60 items (real LaMP profiles hold tens to hundreds; the pipeline
reads at most ``max_pairs_per_user`` of them) and inputs of about the real lengths (LaMP-4 news descriptions of
about 35 words, LaMP-5 abstracts of about 160, LaMP-7 tweets); the quirks above are kept.

As a script: ``python tests/real_lamp_fixture.py OUT_ROOT [--users N] [--seed S] [--splits dev train] [--realistic]``.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.data import lamp

SIZES = (2, 3, 12, 5, 9, 4, 7, 6, 10, 8, 11, 4)  # profile size of user i: SIZES[i % len(SIZES)]
LONG_CHARS = 30_000
WORDS = ("city", "council", "river", "festival", "market", "school", "storm", "bridge", "museum", "team",
         "café", "naïve", "résumé", "São Paulo", "Zürich", "piñata", "façade", "Ångström", "crème brûlée",
         "election", "budget", "vaccine", "robot", "garden", "league", "concert", "harbour", "train", "forest",
         "library", "startup", "drought", "satellite", "protest", "recipe", "bakery", "volcano", "coral")
# --realistic: sentences (about 13 words each) per input and per profile item, as (lo, hi)
REAL_SENTENCES = {"LaMP-4": (2, 3), "LaMP-5": (10, 14), "LaMP-7": (1, 2)}
REAL_PROFILE = (20, 60)
EMOJI = ("🚀", "🎉", "😂", "🌍", "☕", "🔥", "❤️", "📚")
VERBS = ("unveils", "delays", "celebrates", "rejects", "expands", "warns about", "rebuilds", "wins")


def _sentence(rng: random.Random) -> str:
    w = rng.sample(WORDS, rng.randint(3, 9))
    return f"The {w[0]} {rng.choice(VERBS)} the {' '.join(w[1:])} on day {rng.randint(1, 28)}."


def _text(rng: random.Random, lo: int = 1, hi: int = 8) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(lo, hi)))


def _output(rng: random.Random, user: int, used: set) -> str:
    """A new output in user ``user``'s habits (some add an emoji, some shout, some ask)."""
    while True:
        w = rng.sample(WORDS, rng.randint(3, 7))
        out = f"{w[0].title()} {rng.choice(VERBS)} {' '.join(w[1:])}"
        out = [out, out + " " + rng.choice(EMOJI), out.upper(), out + "?"][user % 4]
        if out not in used:
            used.add(out)
            return out


def _item(task: str, iid: str, source: str, output: str) -> dict:
    spec = lamp.task_spec(task)
    if spec.source_field is None:  # LaMP-7: the profile holds only the tweets
        return {"text": output, "id": iid}
    return {spec.source_field: source, spec.output_field: output, "id": iid, "date": "2019-05-01"}


def _profiles(task: str, n_users: int, rng: random.Random, used: set, realistic: bool = False) -> list[list[tuple]]:
    """Per user, its profile as (source, output) pairs; odd users share items with their neighbour."""
    profiles = []
    lo, hi = REAL_SENTENCES[task] if realistic else (1, 8)
    for u in range(n_users):
        size = rng.randint(*REAL_PROFILE) if realistic and u > 1 else SIZES[u % len(SIZES)]
        items = [(_text(rng, lo, hi), _output(rng, u, used)) for _ in range(size)]
        if u % 2 == 1:
            for k in range(min(2 if u == 3 else 1, len(items))):  # same headline, almost the same article
                src, out = profiles[u - 1][k]
                items[k] = (src + " " + _sentence(rng), out)
        profiles.append(items)
    return profiles


def _question(task: str, u: int, rng: random.Random, used: set, realistic: bool = False) -> tuple[str, str]:
    """(input, gold) of user u's question."""
    spec = lamp.task_spec(task)
    body = _text(rng, *(REAL_SENTENCES[task] if realistic else (2, 6)))
    if u == 2:
        body = (body + " ") * (LONG_CHARS // len(body) + 1)
    gold = _output(rng, u, used)
    if task == "LaMP-7":
        body = "someone wrote that " + body.lower()
    if u == 1:
        gold = "" if task != "LaMP-5" else "   "
    return spec.instruction + body.strip(), gold


def write_task(root, task: str, split: str, n_users: int, seed: int, realistic: bool = False) -> None:
    spec = lamp.task_spec(task)
    rng = random.Random(f"{task}-{split}-{seed}")
    used: set = set()
    questions, golds = [], []
    for u, items in enumerate(_profiles(task, n_users, rng, used, realistic)):
        qid = f"{spec.num}{100 + u}"
        inp, gold = _question(task, u, rng, used, realistic)
        profile = [_item(task, f"{qid}{j}", src, out) for j, (src, out) in enumerate(items)]
        questions.append({"id": qid, "input": inp, "profile": profile})
        golds.append({"id": qid, "output": gold})
    for kind, obj in (("questions", questions), ("outputs", {"task": spec.lamp_name, "golds": golds})):
        f = lamp.file_path(root, task, split, kind)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(obj, ensure_ascii=False, indent=1), encoding="utf-8")


def write_real_lamp(root, tasks=("LaMP-4", "LaMP-5", "LaMP-7"), n_users: int = 8, seed: int = 0,
                    splits=("dev",), realistic: bool = False) -> Path:
    """Write the corpus under ``root`` (official layout) and return ``root``."""
    for task in tasks:
        for split in splits:
            write_task(root, task, split, n_users, seed, realistic)
    return Path(root)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_root")
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--splits", nargs="+", default=["dev"], choices=lamp.SPLITS)
    ap.add_argument("--realistic", action="store_true", help="the real files' profile sizes and input lengths")
    a = ap.parse_args(argv)
    write_real_lamp(a.out_root, n_users=a.users, seed=a.seed, splits=tuple(a.splits), realistic=a.realistic)
    print(f"wrote real-like LaMP files ({a.users} users per task{', realistic sizes' if a.realistic else ''}) "
          f"under {a.out_root}")


if __name__ == "__main__":
    main()
