"""Features of preference pairs: :class:`PairFeatures` (chosen / rejected / prefix features addressed by
``pair_id``) and how they are computed with a featurizer of lib/rewards/features.py and cached."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.io import atomic_path, sha256_text


@dataclass
class PairFeatures:
    """Features of the chosen and rejected response of every pair, addressed by ``pair_id``.

    ``prefix_chosen`` / ``prefix_rejected`` ([N, P, d], optional) hold the features of P random
    prefixes per response, cut at the same relative position ``frac`` ([N, P]) on both sides (the
    prefix-trained ablation; RAD, Deng & Raffel 2023, trains rewards on every prefix).
    """

    backbone: str
    kind: str
    pair_ids: list[str]
    chosen: torch.Tensor
    rejected: torch.Tensor
    prefix_chosen: torch.Tensor | None = None
    prefix_rejected: torch.Tensor | None = None

    def __post_init__(self):
        self.index = {p: i for i, p in enumerate(self.pair_ids)}
        if len(self.index) != len(self.pair_ids):
            from collections import Counter

            dup = sorted(p for p, n in Counter(self.pair_ids).items() if n > 1)
            raise ValueError(f"PairFeatures: {len(dup)} pair_id(s) occur more than once, e.g. {dup[:3]} (two pairs "
                             "with one id: rebuild the dataset that made them, e.g. notebook 01's Pref-LaMP)")
        if self.chosen.shape != self.rejected.shape or len(self.chosen) != len(self.pair_ids):
            raise ValueError(f"PairFeatures: shapes {tuple(self.chosen.shape)} / {tuple(self.rejected.shape)} "
                             f"do not match {len(self.pair_ids)} pairs")

    @property
    def dim(self) -> int:
        return int(self.chosen.shape[-1])

    def rows(self, records) -> torch.Tensor:
        missing = [r["pair_id"] for r in records if r["pair_id"] not in self.index]
        if missing:
            raise KeyError(f"no features for pair_id(s) {missing[:5]} ({len(missing)} missing); "
                           "compute PairFeatures on these records")
        return torch.tensor([self.index[r["pair_id"]] for r in records], dtype=torch.long)

    def take(self, records, prefixes: bool = False):
        i = self.rows(records)
        if not prefixes:
            return self.chosen[i], self.rejected[i]
        if self.prefix_chosen is None:
            raise ValueError("prefix_train needs PairFeatures computed with n_prefix > 0")
        return self.prefix_chosen[i], self.prefix_rejected[i]

    @classmethod
    def compute(cls, feat, records, n_prefix: int = 0, cache_dir=None, seed: int = 0, progress: bool = True):
        """Features of ``records`` with a featurizer of lib/rewards/features.py, cached under ``cache_dir``.

        A causal LM forwards each prompt once for both responses (:meth:`LMFeaturizer.pair_hidden`)
        and reads the full-response and the ``n_prefix`` prefix features from the same pass; an
        encoder re-encodes word prefixes.
        """
        from .features import cached_features

        prompts = [r["prompt"] for r in records]
        ids = [r["pair_id"] for r in records]
        if n_prefix == 0 and feat.kind != "lm_last":
            get = (lambda resp: cached_features(feat, prompts, resp, cache_dir, progress)) if cache_dir else \
                (lambda resp: feat.features(prompts, resp, progress=progress))
            return cls(feat.name, feat.kind, ids, get([r["chosen"] for r in records]),
                       get([r["rejected"] for r in records]))
        key = sha256_text("\x1e".join([FEATURE_VERSION, getattr(feat, "cache_id", feat.name), feat.kind, str(getattr(feat, "max_length", "")),
                                       str(n_prefix), str(seed)] + [f"{r['prompt']}\x1f{r['chosen']}\x1f{r['rejected']}"
                                                                    for r in records]))[:24]
        path = Path(cache_dir) / f"{feat.name}-pairs-{key}.pt" if cache_dir else None
        if path is not None and path.exists():
            d = _load_features(path)
        else:
            frac = torch.rand(len(records), n_prefix, generator=torch.Generator().manual_seed(seed))
            chosen, rejected = [r["chosen"] for r in records], [r["rejected"] for r in records]
            if feat.kind == "lm_last":
                c, pc, r_, pr = _lm_pair_features(feat, prompts, chosen, rejected, frac, progress)
            else:
                (c, pc), (r_, pr) = (_encoder_prefix_features(feat, prompts, side, frac, progress)
                                     for side in (chosen, rejected))
            d = {"chosen": c, "rejected": r_}
            if n_prefix:
                d |= {"prefix_chosen": pc, "prefix_rejected": pr}
            if path is not None:
                with atomic_path(path) as tmp:
                    torch.save(d, tmp)
        return cls(feat.name, feat.kind, ids, **d)


FEATURE_VERSION = "pairs-v4"  # part of the feature cache key: bump when the computation changes


def _load_features(path) -> dict:
    """The cached pair features, or :class:`lib.rewards.features.CorruptCacheError` naming the file (empty, truncated,
    not a torch file, or not the dict of feature tensors this module writes)."""
    from .features import _corrupt, load_torch

    d = load_torch(path)
    if not isinstance(d, dict) or not {"chosen", "rejected"} <= set(d) or \
            not all(isinstance(v, torch.Tensor) and v.is_floating_point() for v in d.values()):
        raise _corrupt(path)(f"holds a {type(d).__name__} that is not the dict of pair feature tensors (chosen, "
                             "rejected[, prefix_*]) written by PairFeatures")
    return d


def _cut(frac: torch.Tensor, n: int) -> torch.Tensor:
    """Prefix lengths in 1..n for relative positions ``frac`` in [0, 1)."""
    return (frac * n).ceil().long().clamp(1, max(n, 1))


def _lm_pair_features(feat, prompts, chosen, rejected, frac, progress):
    """Full-response and prefix features of both sides, every prompt forwarded once.

    ``pair_hidden`` gives per response the T response-token states then the state of an appended
    end-of-sequence token: the full feature is that last state, prefixes are cut among the T others.
    """
    hs = feat.pair_hidden(prompts, [chosen, rejected], progress=progress)
    out = []
    for side in hs:
        full = torch.stack([h[-1] for h in side])
        pre = torch.stack([h[_cut(frac[i], len(h) - 1) - 1] for i, h in enumerate(side)]) if frac.shape[1] else None
        out += [full, pre]
    return out


def _encoder_prefix_features(feat, prompts, responses, frac, progress):
    full = feat.features(prompts, responses, progress=progress)
    words = [r.split() for r in responses]
    P = frac.shape[1]
    cut_texts = [" ".join(w[: int(_cut(frac[i, j], max(len(w), 1)))]) or r
                 for i, (w, r) in enumerate(zip(words, responses)) for j in range(P)]
    pre = feat.features([p for p in prompts for _ in range(P)], cut_texts, progress=progress)
    return full, pre.reshape(len(responses), P, -1)


def _check_finite(pf: PairFeatures, records):
    i = pf.rows(records)
    bad = ~(torch.isfinite(pf.chosen[i]).all(-1) & torch.isfinite(pf.rejected[i]).all(-1))
    if bad.any():
        ids = [records[j]["pair_id"] for j in bad.nonzero()[:, 0].tolist()]
        raise ValueError(f"non-finite features (NaN/inf) for {len(ids)} pair(s), e.g. pair_id {ids[:3]}")
