"""The generations Pref-LaMP asks the base policy for (rejected responses, LaMP-7 paraphrases): a per-prompt
JSONL cache that grows batch by batch (resumable); the generator that fills it from the base policy is
:func:`lib.decoding.greedy.policy_generator`."""
from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

from ..core.io import sha256_text, write_text
from .preflamp import clean_generation


def _cache_record(line: str) -> dict | None:
    """A cache line's ``{"k", "g"}`` record, or None if the line is not one (cut, not an object, keys missing)."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("k"), str) and isinstance(rec.get("g"), str) else None


class GenerationCache:
    """prompt -> generation, appended to a JSONL file batch by batch (resumable).

    On open, a file whose last line was cut (no final newline: a killed write) or that holds unreadable
    lines (not JSON, not an object, a key missing) is repaired: rewritten atomically with only its
    readable records, with one warning naming the file and lines; those prompts are generated again.
    """

    def __init__(self, path: Path, key: str):
        self.path, self.key, self.data = Path(path), key, {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        text = self.path.read_text(encoding="utf-8", errors="replace")
        good, bad = [], []
        for i, line in enumerate(text.splitlines(), 1):
            rec = _cache_record(line)
            if rec is None:
                bad.append(i)
                continue
            self.data[rec["k"]] = rec["g"]
            good.append(line)
        if bad or (text and not text.endswith("\n")):
            write_text(self.path, "".join(line + "\n" for line in good))
        if bad:
            warnings.warn(f"{self.path}: line(s) {bad} unreadable (an interrupted write?): removed from the cache "
                          "file; those prompts will be generated again")

    def _k(self, prompt: str) -> str:
        return sha256_text(self.key + "\x1f" + prompt)[:32]

    def get(self, prompt):
        return self.data.get(self._k(prompt))

    def add(self, prompts, gens):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for p, g in zip(prompts, gens):
                self.data[self._k(p)] = g
                f.write(json.dumps({"k": self._k(p), "g": g}) + "\n")
            f.flush()


def cached_generator(generate_batch: Callable[[list[str]], list[str]], cache_path: str | Path | None, key: str,
                     batch_size: int = 16, desc: str = "rejected") -> Callable[[list[str]], list[str]]:
    """Wrap a batch generator with a per-prompt cache that grows batch by batch (resumable).

    Batches are fixed slices of the sorted unique prompts, so a resumed run batches exactly as a
    fresh one and produces the same outputs; a batch whose prompts are all cached is skipped.
    """
    from ..core.progress import bar

    cache = GenerationCache(cache_path, key) if cache_path else None

    def gen(prompts: list[str]) -> list[str]:
        out = {}
        uniq = sorted(set(prompts), key=lambda p: (len(p), p))
        batches = [uniq[i : i + batch_size] for i in range(0, len(uniq), batch_size)]
        for b in bar(batches, desc=desc):
            cached = [cache.get(p) if cache else None for p in b]
            if all(c is not None for c in cached):
                out.update(zip(b, cached))
                continue
            g = [clean_generation(t) for t in generate_batch(b)]
            if len(g) != len(b):
                raise RuntimeError(f"generator returned {len(g)} outputs for {len(b)} prompts")
            if cache:
                cache.add(b, g)
            out.update(zip(b, g))
        return [out[p] for p in prompts]

    return gen
