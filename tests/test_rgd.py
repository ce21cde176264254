"""Reward-guided decoding (lib/decoding/rgd.py): cached paths == uncached reference, token for token.

Tiny random Llamas (tests/_tiny.py) make these fast; one test uses the packaged SmolLM2.
Set ``RGD_TEST_DEVICE=cuda`` to run them on a GPU (fp32 there too, so token equality holds).
"""
import os

import pytest
import torch
from torch import nn

from lib.decoding import rgd
from lib.decoding.backends import BACKENDS, RowHeads, make_backend
from lib.decoding.rgd import DecodingSettings as S
from lib.rewards import RewardModel
from lib.rewards.features import EncoderFeaturizer, LMFeaturizer

from _tiny import tiny_lm, tiny_tokenizer

DEV = os.environ.get("RGD_TEST_DEVICE", "cpu")
USERS = ["ann", "bob", "cy"]
PROMPTS = ["generate a headline for this article : stock market rises today",
           "paraphrase this tweet : rain and sun in the city",
           "title for the paper abstract : we propose a new method for deep learning with neural network results"]


class DummyRM(RewardModel):
    """Linear reward with a per-user vector: r = <f, a + u_user> / sqrt(d)."""

    method = "dummy"

    def __init__(self, backbone, kind, dim, users=USERS, seed=0, scale=1.0):
        super().__init__(backbone, kind, dim, users)
        g = torch.Generator().manual_seed(seed)
        self.a = nn.Parameter(torch.randn(dim, generator=g))
        self.u = nn.Parameter(torch.randn(len(users), dim, generator=g))
        self.scale = scale / dim ** 0.5

    def head(self, feats, user_idx):
        return self.scale * (feats * (self.a + self.u[user_idx])).sum(-1)


@pytest.fixture(scope="module")
def tok():
    t = tiny_tokenizer()
    t.padding_side = "left"
    return t


def _lm(tok, seed, attn="sdpa", layers=2):
    m = tiny_lm(tok, seed=seed, layers=layers)
    m.config._attn_implementation = attn
    return m.to(DEV)


@pytest.fixture(scope="module")
def policy(tok):
    return _lm(tok, 0)


@pytest.fixture(scope="module")
def rm_lm(tok):
    return LMFeaturizer(_lm(tok, 1), tok, name="tiny-rm")


@pytest.fixture(scope="module")
def encoder(tok):
    """A tiny random BERT with its own (different) word-level tokenizer: the text path."""
    from transformers import BertConfig, BertModel

    etok = tiny_tokenizer()
    etok.add_tokens(["<extra>"])  # a different vocabulary than the policy's
    torch.manual_seed(2)
    cfg = BertConfig(vocab_size=len(etok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512)
    return EncoderFeaturizer(BertModel(cfg).eval().to(DEV), etok, name="tiny-enc")


def _rm(kind):
    if kind == "shared":
        return DummyRM("tiny", "lm_last", 32, seed=3)
    if kind == "separate":
        return DummyRM("tiny-rm", "lm_last", 32, seed=4)
    return DummyRM("tiny-enc", "encoder_mean", 32, seed=5)


def _run(policy, tok, kind, rm_lm, encoder, prompts=PROMPTS, users=None, w=1.0, **settings):
    """``generate`` with ``_rm(kind)`` on its backbone; ``settings`` are DecodingSettings fields (no EOS stop)."""
    feat = {"shared": None, "separate": rm_lm, "text": encoder}[kind]
    settings.setdefault("eos_token_ids", [])
    return rgd.generate(policy, tok, prompts, users or USERS[: len(prompts)], rm=_rm(kind), w=w, policy_name="tiny",
                        featurizer=feat, settings=S(**settings))


def _hf_generate(policy, tok, prompts, n, **kw):
    """``model.generate`` greedy, n tokens, never stopping at EOS (like ``eos_token_ids=[]``).

    ``eos_token_id=None`` falls back to the model config's EOS, so a never-produced id stands in.
    """
    import copy

    from lib.core import models

    tok.padding_side = "left"
    enc = tok([models.prompt_text(tok, p) for p in prompts], return_tensors="pt", padding=True,
              add_special_tokens=False).to(DEV)
    gc = copy.deepcopy(policy.generation_config)
    gc.eos_token_id, gc.pad_token_id, gc.do_sample, gc.max_new_tokens = 10**9, tok.pad_token_id, False, n
    out = policy.generate(**enc, generation_config=gc, **kw)
    return out[:, enc["input_ids"].shape[1]:].tolist()


def _hf_greedy(policy, tok, prompts, n):
    return _hf_generate(policy, tok, prompts, n)


# --- w = 0 is greedy decoding ------------------------------------------------------------
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_w0_equals_generate_greedy(tok, attn):
    policy = _lm(tok, 0, attn)
    ref = _hf_greedy(policy, tok, PROMPTS, 40)
    plain = rgd.generate(policy, tok, PROMPTS, settings=S(max_new_tokens=40, eos_token_ids=[]))
    assert plain.path == "plain" and plain.sequences == ref
    # the tree machinery with a reward model but w = 0 (scores returned) is still greedy
    tree = rgd.generate(policy, tok, PROMPTS, USERS, rm=_rm("shared"), w=0.0, policy_name="tiny",
                        settings=S(max_new_tokens=40, eos_token_ids=[], return_scores=True))
    assert tree.path == "shared" and tree.sequences == ref


# --- every cached path equals the uncached reference -------------------------------------
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("kind", ["shared", "separate", "text"])
def test_cached_equals_naive(tok, rm_lm, encoder, kind, attn):
    policy = _lm(tok, 0, attn)
    feat_model = LMFeaturizer(_lm(tok, 1, attn), tok, name="tiny-rm") if kind == "separate" else rm_lm
    cached = _run(policy, tok, kind, feat_model, encoder, max_new_tokens=36, return_scores=True)
    naive = _run(policy, tok, kind, feat_model, encoder, max_new_tokens=36, path="naive", return_scores=True)
    assert cached.path == kind and naive.path == "naive"
    assert all(len(s) == 36 for s in cached.sequences)
    assert cached.sequences == naive.sequences
    torch.testing.assert_close(cached.cand_reward, naive.cand_reward, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(cached.cand_logp, naive.cand_logp, atol=1e-4, rtol=1e-4)
    # the reward matters: RGD differs from greedy on some row
    assert cached.sequences != _hf_greedy(policy, tok, PROMPTS, 36)


def test_paths_chosen_from_reward_model(tok, policy, rm_lm, encoder):
    for kind in ["shared", "separate", "text"]:
        assert _run(policy, tok, kind, rm_lm, encoder, max_new_tokens=2).path == kind
    with pytest.raises(ValueError, match="does not fit"):
        _run(policy, tok, "text", rm_lm, encoder, max_new_tokens=2, path="shared")


# --- batching, padding, chunking ---------------------------------------------------------
@pytest.mark.parametrize("kind", ["shared", "separate", "text"])
def test_batch_equals_one_by_one(tok, policy, rm_lm, encoder, kind):
    batch = _run(policy, tok, kind, rm_lm, encoder, max_new_tokens=32)
    for i, p in enumerate(PROMPTS):
        one = _run(policy, tok, kind, rm_lm, encoder, prompts=[p], users=[USERS[i]], max_new_tokens=32)
        assert one.sequences[0] == batch.sequences[i], f"row {i}"


@pytest.mark.parametrize("kind", ["shared", "separate"])
def test_left_padding_does_not_change_a_row(tok, policy, rm_lm, encoder, kind):
    short = PROMPTS[1]
    alone = _run(policy, tok, kind, rm_lm, encoder, prompts=[short], users=["bob"], max_new_tokens=32)
    long = short + " and" * 60  # forces 60+ pad tokens in front of the short row
    padded = _run(policy, tok, kind, rm_lm, encoder, prompts=[long, short], users=["ann", "bob"], max_new_tokens=32)
    assert padded.sequences[1] == alone.sequences[0]


@pytest.mark.parametrize("kind", ["shared", "separate", "text"])
def test_chunked_candidates_equal_unchunked(tok, policy, rm_lm, encoder, kind):
    full = _run(policy, tok, kind, rm_lm, encoder, max_new_tokens=16, k=5)
    chunked = _run(policy, tok, kind, rm_lm, encoder, max_new_tokens=16, k=5, chunk_size=4)  # 1 column per chunk
    assert chunked.sequences == full.sequences


_SECOND = {"shared": ("tiny", "lm_last"), "separate": ("tiny-rm", "lm_last"), "text": ("tiny-enc", "encoder_mean")}


@pytest.mark.parametrize("kind", ["shared", "separate", "text"])
def test_rows_of_many_reward_models_and_ws_equal_one_setting_at_a_time(tok, policy, rm_lm, encoder, kind):
    """rows = (prompt, reward model, w) in one batch: each row decodes as its setting alone would,
    and a row without a reward model (w = 0) is plain greedy decoding."""
    feat = {"shared": None, "separate": rm_lm, "text": encoder}[kind]
    rms = [_rm(kind), DummyRM(*_SECOND[kind], 32, seed=9, scale=3.0)]
    settings = [(rms[0], 1.0), (rms[1], 1.0), (rms[1], 4.0), (None, 0.0)]
    rows = [(p, u, m, w) for m, w in settings for p, u in zip(PROMPTS, USERS)]
    mixed = rgd.generate(policy, tok, [r[0] for r in rows], [r[1] for r in rows], rm=[r[2] for r in rows],
                         w=[r[3] for r in rows], policy_name="tiny", featurizer=feat,
                         settings=S(max_new_tokens=20, eos_token_ids=[], return_scores=True))
    assert mixed.path == kind
    for s, (m, w) in enumerate(settings):
        alone = rgd.generate(policy, tok, PROMPTS, USERS, rm=m, w=w, policy_name="tiny", featurizer=feat,
                             settings=S(max_new_tokens=20, eos_token_ids=[]))
        got = mixed.sequences[s * len(PROMPTS) : (s + 1) * len(PROMPTS)]
        assert got == alone.sequences, f"setting {s}"
    assert len({tuple(x) for x in mixed.sequences[: 3 * len(PROMPTS)]}) > len(PROMPTS)  # settings really differ
    assert mixed.cand_score.shape == mixed.cand_logp.shape
    with pytest.raises(ValueError, match="w = 0"):
        rgd.generate(policy, tok, PROMPTS[:2], USERS[:2], rm=[rms[0], None], w=1.0, policy_name="tiny",
                     featurizer=feat, settings=S(max_new_tokens=2))
    other = _rm("text" if kind != "text" else "shared")
    with pytest.raises(ValueError, match="share the reward backbone"):
        rgd.generate(policy, tok, PROMPTS[:2], USERS[:2], rm=[rms[0], other], w=1.0, policy_name="tiny",
                     featurizer=feat, settings=S(max_new_tokens=2))


def test_prefill_of_repeated_prompts_equals_a_full_forward(tok, policy):
    """Repeated rows are forwarded once and their cache copied: same hidden states and cache as forwarding all."""
    from transformers import DynamicCache

    from lib.core import kvcache, models

    seqs = [models.prompt_ids(tok, p) for p in [PROMPTS[0], PROMPTS[1], PROMPTS[0], PROMPTS[2], PROMPTS[1]]]
    ids, mask = models.pad_batch(seqs, tok.pad_token_id, "left", DEV)
    h, cache = kvcache.prefill(policy, ids, mask)
    full = DynamicCache(config=policy.config)
    out = kvcache.run_decoder(policy, full, input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0))
    torch.testing.assert_close(h, out.last_hidden_state[:, -1], atol=1e-5, rtol=1e-5)
    for a, b in zip(cache.layers, full.layers):
        torch.testing.assert_close(a.keys * mask[:, None, :, None], b.keys * mask[:, None, :, None], atol=1e-5, rtol=1e-5)
    assert cache.layers[0].keys.shape == full.layers[0].keys.shape


def test_users_change_the_output(tok, policy, rm_lm, encoder):
    a = _run(policy, tok, "shared", rm_lm, encoder, prompts=[PROMPTS[0]] * 3, users=USERS, max_new_tokens=16, w=3.0)
    assert len({tuple(s) for s in a.sequences}) > 1


# --- sampling and stopping ---------------------------------------------------------------
def test_sampling_reproducible_with_seed(tok, policy, rm_lm, encoder):
    run = lambda seed: _run(policy, tok, "shared", rm_lm, encoder, max_new_tokens=24, temperature=1.0, seed=seed)  # noqa: E731
    a, b = run(7), run(7)
    assert a.sequences == b.sequences
    assert any(run(s).sequences != a.sequences for s in (8, 9, 10))
    naive = _run(policy, tok, "shared", rm_lm, encoder, max_new_tokens=24, temperature=1.0, seed=7, path="naive")
    assert naive.sequences == a.sequences


@pytest.mark.parametrize("kind", ["shared", "separate", "text"])
def test_rows_stop_independently_at_eos(tok, policy, rm_lm, encoder, kind):
    free = _run(policy, tok, kind, rm_lm, encoder, max_new_tokens=24)
    # an EOS that row 0 emits early (steps 3..19) and some other row never emits
    stop = next(t for t in free.sequences[0][3:20] if any(t not in s for s in free.sequences[1:]))
    out = _run(policy, tok, kind, rm_lm, encoder, max_new_tokens=24, eos_token_ids=[stop], return_scores=True)
    for i, s in enumerate(free.sequences):
        assert out.sequences[i] == (s[: s.index(stop) + 1] if stop in s else s), f"row {i}"
    f = free.sequences[0].index(stop)
    assert len(out.sequences[0]) == f + 1 < 24  # row 0 stopped at its EOS ...
    assert max(map(len, out.sequences)) == 24 == out.chosen.shape[1]  # ... while another row ran on
    assert (out.chosen[0, f + 1:] == -1).all() and out.cand_reward[0, f + 1:].isnan().all()
    assert (out.chosen[0, : f + 1] >= 0).all() and not out.cand_reward[0, : f + 1].isnan().any()


def test_bad_users_raise(tok, policy, rm_lm, encoder):
    with pytest.raises(KeyError, match="zed"):
        _run(policy, tok, "shared", rm_lm, encoder, users=["ann", "bob", "zed"], max_new_tokens=2)
    with pytest.raises(ValueError, match="one user per prompt"):
        _run(policy, tok, "shared", rm_lm, encoder, users=["ann"], max_new_tokens=2)


# --- LogitsProcessor ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["shared", "separate", "text"])
def test_logits_processor_equals_engine(tok, policy, rm_lm, encoder, kind):
    feat = {"shared": None, "separate": rm_lm, "text": encoder}[kind]
    proc = rgd.RGDLogitsProcessor(policy, tok, _rm(kind), PROMPTS, USERS, w=1.0, policy_name="tiny",
                                  featurizer=feat, settings=S(k=10))
    out = _hf_generate(policy, tok, PROMPTS, 20, logits_processor=[proc])
    assert out == _run(policy, tok, kind, rm_lm, encoder, max_new_tokens=20).sequences
    assert out == _run(policy, tok, kind, rm_lm, encoder, max_new_tokens=20, path="naive").sequences


# --- the backend factory and the settings ------------------------------------------------
@pytest.mark.parametrize("path,kind", [("plain", None), ("shared", "shared"), ("separate", "separate"),
                                       ("text", "text"), ("naive", "shared"), ("naive", "separate"), ("naive", "text")])
def test_make_backend_builds_the_backend_of_each_path(tok, policy, rm_lm, encoder, path, kind):
    from lib.core import models

    feat = {None: None, "shared": None, "separate": rm_lm, "text": encoder}[kind]
    ids, texts = rgd.encode_prompts(tok, PROMPTS)
    heads = RowHeads(_rm(kind), USERS, len(PROMPTS)) if kind else None
    be = make_backend(path, kind, policy, tok, ids, texts, heads, feat, 4096)
    assert type(be) is BACKENDS[path] and be.needs_rewards == (path != "plain")
    if path == "separate":  # the reward backbone's own prefix: the prompts left-padded, one column per token
        assert be.rm_mask.sum(1).tolist() == [len(models.prompt_ids(rm_lm.tok, p)) for p in PROMPTS]
    if path == "naive":  # a separate backbone reads the messages in its own prompt format; other kinds need none
        want = [models.prompt_ids(rm_lm.tok, p) for p in PROMPTS] if kind == "separate" else None
        assert be.rm_prompt_ids == want and be.prompt_ids == ids


def test_make_backend_rejects_token_id_prompts_on_the_text_path_and_unknown_paths(tok, policy, encoder):
    ids, _ = rgd.encode_prompts(tok, PROMPTS)
    heads = RowHeads(_rm("text"), USERS, len(PROMPTS))
    for path in ("text", "naive"):
        with pytest.raises(ValueError, match="prompts as strings"):
            make_backend(path, "text", policy, tok, ids, None, heads, encoder, 4096)
    with pytest.raises(ValueError, match="unknown path 'beam'"):
        make_backend("beam", "text", policy, tok, ids, None, heads, encoder, 4096)


def test_decoding_settings_defaults_and_bad_values():
    s = S()
    assert (s.k, s.max_new_tokens, s.temperature, s.seed, s.chunk_size) == (10, 64, 0.0, 0, 4096)
    assert (s.eos_token_ids, s.return_scores, s.path, s.progress) == (None, False, None, False)
    with pytest.raises(AttributeError):
        s.k = 3  # frozen: a settings object means one thing wherever it is passed
    for bad, field in [(dict(k=0), "k"), (dict(k=2.5), "k"), (dict(max_new_tokens=-1), "max_new_tokens"),
                       (dict(chunk_size=0), "chunk_size"), (dict(temperature=-0.5), "temperature")]:
        with pytest.raises(ValueError, match=f"DecodingSettings.{field} must be"):
            S(**bad)
    with pytest.raises(ValueError, match="unknown path 'beam'"):
        S(path="beam")
    assert S(max_new_tokens=0).max_new_tokens == 0


def test_settings_reach_the_decoder(tok, policy, rm_lm, encoder):
    """k, max_new_tokens and return_scores of the settings shape the output: [B, T, k] arrays."""
    out = _run(policy, tok, "shared", rm_lm, encoder, k=3, max_new_tokens=5, return_scores=True)
    assert out.cand_ids.shape == (3, 5, 3) and [len(s) for s in out.sequences] == [5, 5, 5]
    assert out.extra["k"] == 3 and out.extra["temperature"] == 0.0
    assert _run(policy, tok, "shared", rm_lm, encoder, max_new_tokens=5).cand_ids is None


# --- the packaged SmolLM2 ----------------------------------------------------------------
@pytest.mark.slow
def test_smollm2_cached_equals_naive_and_greedy():
    from lib.core import models

    policy, tok = models.load_causal_lm("smollm2-135m", device=DEV, dtype=torch.float32)
    prompts = ["Write a headline for: Stocks rally as inflation cools.", "Paraphrase: I love rainy mornings.",
               "Give a title for a paper on sparse attention."]
    rm = DummyRM("smollm2-135m", "lm_last", policy.config.hidden_size, seed=11, scale=2.0)
    kw = dict(users=USERS, rm=rm, w=1.0, policy_name="smollm2-135m")
    cached = rgd.generate(policy, tok, prompts, settings=S(k=2, max_new_tokens=32, eos_token_ids=[]), **kw)
    naive = rgd.generate(policy, tok, prompts, settings=S(k=2, max_new_tokens=32, eos_token_ids=[], path="naive"), **kw)
    assert cached.path == "shared" and all(len(s) == 32 for s in cached.sequences)
    assert cached.sequences == naive.sequences
    plain = rgd.generate(policy, tok, prompts, settings=S(max_new_tokens=32, eos_token_ids=[]))
    assert plain.sequences == _hf_generate(policy, tok, prompts, 32)
    assert cached.sequences != plain.sequences


# --- sliding-window attention (Gemma 3) --------------------------------------------------
def _tiny_gemma(tok, window: int):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(5)
    cfg = Gemma3TextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=window,
                           layer_types=["sliding_attention", "full_attention"], max_position_embeddings=1024,
                           pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    return Gemma3ForCausalLM(cfg).eval().to(DEV)


def test_sliding_window_model_cached_equals_naive_inside_the_window(tok):
    policy = _tiny_gemma(tok, window=128)
    kw = dict(users=USERS, rm=DummyRM("tiny", "lm_last", 32, seed=3, scale=3.0), w=1.0, policy_name="tiny")
    cached = rgd.generate(policy, tok, PROMPTS, settings=S(k=4, max_new_tokens=32, eos_token_ids=[]), **kw)
    assert cached.path == "shared"
    naive = rgd.generate(policy, tok, PROMPTS, settings=S(k=4, max_new_tokens=32, eos_token_ids=[], path="naive"), **kw)
    assert cached.sequences == naive.sequences
    assert rgd.generate(policy, tok, PROMPTS, settings=S(max_new_tokens=32, eos_token_ids=[])).sequences == \
        _hf_generate(policy, tok, PROMPTS, 32)


def test_sliding_window_overflow_raises_instead_of_decoding_wrongly(tok):
    policy = _tiny_gemma(tok, window=24)  # the longest prompt alone is ~20 tokens
    with pytest.raises(NotImplementedError, match="sliding window"):
        rgd.generate(policy, tok, PROMPTS, users=USERS, rm=DummyRM("tiny", "lm_last", 32, seed=3), w=1.0,
                     policy_name="tiny", settings=S(k=4, max_new_tokens=16, eos_token_ids=[]))


@pytest.mark.slow
def test_gemma3_cached_equals_naive_and_is_coherent():
    """The packaged Gemma 3 270M (base, sliding-window layers): cached path a == the reference."""
    from lib.core import models

    policy, tok = models.load_causal_lm("gemma3-270m", device=DEV, dtype=torch.float32)
    prompts = ["Write a headline for: Stocks rally as inflation cools.", "Paraphrase: I love rainy mornings."]
    rm = DummyRM("gemma3-270m", "lm_last", policy.config.hidden_size, users=USERS[:2], seed=11, scale=2.0)
    kw = dict(users=USERS[:2], rm=rm, w=1.0, policy_name="gemma3-270m")
    cached = rgd.generate(policy, tok, prompts, settings=S(k=2, max_new_tokens=10, eos_token_ids=[]), **kw)
    naive = rgd.generate(policy, tok, prompts, settings=S(k=2, max_new_tokens=10, eos_token_ids=[], path="naive"), **kw)
    assert cached.path == "shared" and cached.sequences == naive.sequences
    plain = rgd.generate(policy, tok, prompts, settings=S(max_new_tokens=12, eos_token_ids=[]))
    assert plain.sequences == _hf_generate(policy, tok, prompts, 12)
    # with its <bos> (models.prompt_text) the base model continues the text instead of repeating one token
    assert all(len(set(s)) > 3 for s in plain.sequences)


@pytest.mark.slow
def test_gemma3_teacher_forcing_matches_its_decoder():
    """Notebook 04's scoring on the packaged Gemma 3 270M (262k-token vocabulary, sliding-window layers; the smoke
    profile generates with SmolLM2 only): teacher-forcing an RGD output gives the decoder's own candidates,
    log-probs and rewards."""
    import numpy as np

    from lib.core import models
    from lib.evaluation import policy_accuracy

    policy, tok = models.load_causal_lm("gemma3-270m", device=DEV, dtype=torch.float32)
    prompts = ["Write a headline for: Stocks rally as inflation cools.", "Paraphrase: I love rainy mornings."]
    rm = DummyRM("gemma3-270m", "lm_last", policy.config.hidden_size, users=USERS[:2], seed=11, scale=2.0)
    out = rgd.generate(policy, tok, prompts, USERS[:2], rm=rm, w=1.0, policy_name="gemma3-270m",
                       settings=S(k=4, max_new_tokens=8, eos_token_ids=[], return_scores=True))
    tfs = policy_accuracy.teacher_forced(policy, tok, rm, prompts, out.sequences, USERS[:2], k=4,
                                         policy_name="gemma3-270m", progress=False, eos=False)
    for b, tf in enumerate(tfs):
        assert tf.path == "shared" and (tf.cand_ids == out.cand_ids[b].numpy()).all()
        assert (tf.gold_idx == out.chosen[b].numpy()).all()
        np.testing.assert_allclose(tf.cand_logp, out.cand_logp[b].numpy(), atol=1e-3)
        np.testing.assert_allclose(tf.cand_r, out.cand_reward[b].numpy(), atol=1e-3)
