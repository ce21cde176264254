"""Pack what notebooks 02-06 start from (the outputs of 01-05) into one archive (what `make artifacts` runs).

    python scripts/pack_artifacts.py --profile smoke [--root DATA_ROOT] [--out build/artifacts-smoke.tar.gz]

The archive holds ``data/processed/<profile>/{preflamp,prefsets,rms,rgd,eval}`` (those that exist: notebooks 01-02
must have run, 03-05 may have) under those same paths, so unpacking it at the repository root
(``tar xzf build/artifacts-smoke.tar.gz``) lets each notebook whose inputs it holds start without re-running the
notebooks before it: 03 and 04 from a run of 01-02, 05 from a run of 01-04, 06 from a whole run.

Licenses: a build from the synthetic corpus (``corpus: synthetic`` in ``preflamp/manifest.json``) holds only text
this project generated, and is packed whole. A build from real LaMP holds LaMP text (prompts, users' outputs,
profiles), which LaMP's license (CC BY-NC-SA 4.0) does not let this project redistribute, and its preference sets
hold text of their own source datasets: every ``*.jsonl`` is left out, and so are notebook 03's decodes and notebook
05's generations (``rgd/decodes.csv``, ``eval/generations.csv``: the users' outputs are their ``reference`` column,
and the policies' outputs quote the LaMP inputs). The archive then carries the reward models, every table of scores
and every manifest (its sha256 lets a rebuild from your own LaMP copy be checked); rebuild
the text with notebook 01 (`make data`), then `touch` ``rms/index.csv`` so Make does not retrain.
"""
from __future__ import annotations

import argparse
import json
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib.core.config import paths  # noqa: E402
from lib.core.io import atomic_path  # noqa: E402

PACKED = ("preflamp", "prefsets", "rms", "rgd", "eval")  # the outputs of notebooks 01-05, where they exist
TEXT_TABLES = ("rgd/decodes.csv", "eval/generations.csv")  # real builds: tables that carry LaMP text
NEEDED = ("preflamp/manifest.json", "rms/index.csv")


def corpus_of(processed: Path) -> str:
    """The corpus the profile's Pref-LaMP was built from (its manifest's ``corpus``), or an error naming the file."""
    f = processed / "preflamp" / "manifest.json"
    try:
        corpus = json.loads(f.read_text(encoding="utf-8"))["corpus"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{f}: no readable 'corpus' entry ({type(e).__name__}); rebuild with `make data`") from None
    return corpus


def members(processed: Path) -> tuple[list[Path], list[Path]]:
    """(files to pack, files left out for their license), sorted, relative to ``processed``."""
    missing = [n for n in NEEDED if not (processed / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{processed}: {missing} missing; build notebooks 01-02 first (`make rms`)")
    synthetic = corpus_of(processed) == "synthetic"
    files = sorted(p.relative_to(processed) for d in PACKED if (processed / d).is_dir()
                   for p in (processed / d).rglob("*") if p.is_file())
    keep = [f for f in files if synthetic or (f.suffix != ".jsonl" and f.as_posix() not in TEXT_TABLES)]
    return keep, [f for f in files if f not in keep]


def pack(profile: str, out, root=None) -> tuple[list[str], list[str]]:
    """Write the archive of ``profile`` to ``out`` atomically; return (packed, left out) as archive paths."""
    processed = paths(profile, root).processed
    keep, left = members(processed)
    prefix = Path("data") / "processed" / profile
    with atomic_path(out, suffix=".tar.gz") as tmp, tarfile.open(tmp, "w:gz") as tar:
        for f in keep:
            tar.add(processed / f, arcname=str(prefix / f), recursive=False)
    return [str(prefix / f) for f in keep], [str(prefix / f) for f in left]


def main(argv=None) -> int:
    """CLI: pack a profile, print what was packed and what was left out (and why)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--root", help="the data root (default: the repository, or $PRC_ROOT)")
    ap.add_argument("--out", help="archive path (default: <root>/build/artifacts-<profile>.tar.gz)")
    a = ap.parse_args(argv)
    out = Path(a.out) if a.out else paths(a.profile, a.root).root / "build" / f"artifacts-{a.profile}.tar.gz"
    keep, left = pack(a.profile, out, a.root)
    print(f"[artifacts] {out}: {len(keep)} files")
    if left:
        print(f"[artifacts] left out ({len(left)} files of LaMP or other datasets' text: their licenses do not "
              f"allow redistribution; rebuild them with `make data`): " + ", ".join(left))
    return 0


if __name__ == "__main__":
    sys.exit(main())
