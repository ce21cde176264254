"""Teacher-forced RGD scoring (lib/policy_accuracy.py) on tiny random Llamas."""
import numpy as np
import pytest
import torch

from lib.core import models
from lib.decoding import rgd
from lib.evaluation import policy_accuracy

from test_rgd import DEV, PROMPTS, USERS, _lm, _rm, encoder, rm_lm, tok  # noqa: F401 (fixtures)

RESPONSES = ["stock market rises today", "rain and sun", "a new deep learning method"]
REJECTED = ["the cat sat on the mat", "news today", "music film game"]


@pytest.fixture(scope="module")
def policy(tok):
    return _lm(tok, 0)


def _feat(kind, rm_lm, encoder):
    return {"shared": None, "separate": rm_lm, "text": encoder}[kind]


def _tf(policy, tok, kind, rm_lm, encoder, responses, k=10, **kw):
    return policy_accuracy.teacher_forced(policy, tok, _rm(kind), PROMPTS, responses, USERS, k=k, policy_name="tiny",
                                     featurizer=_feat(kind, rm_lm, encoder), progress=False, **kw)


@torch.no_grad()
def _loglik(policy, tok, prompt, response, eos=True):
    x, y = models.prompt_ids(tok, prompt), tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] * eos
    logits = policy(input_ids=torch.tensor([x + y], device=DEV)).logits[0].float()
    lp = torch.log_softmax(logits[len(x) - 1 : -1], -1)
    return float(lp.gather(1, torch.tensor(y, device=DEV)[:, None]).sum())


@pytest.mark.parametrize("kind", ["shared", "separate", "text"])
def test_teacher_forced_matches_the_decoder(tok, policy, rm_lm, encoder, kind):
    """Teacher-forcing an RGD output reproduces the decoder's own candidates, log-probs and rewards."""
    out = rgd.generate(policy, tok, PROMPTS, USERS, rm=_rm(kind), w=1.0, policy_name="tiny",
                       featurizer=_feat(kind, rm_lm, encoder),
                       settings=rgd.DecodingSettings(k=6, max_new_tokens=12, eos_token_ids=[], return_scores=True))
    tfs = _tf(policy, tok, kind, rm_lm, encoder, out.sequences, k=6, eos=False)  # decoded without stopping
    for b, tf in enumerate(tfs):
        assert (tf.cand_ids == out.cand_ids[b].numpy()).all()
        np.testing.assert_allclose(tf.cand_logp, out.cand_logp[b].numpy(), atol=1e-4)
        np.testing.assert_allclose(tf.cand_r, out.cand_reward[b].numpy(), atol=1e-4)
        assert (tf.gold_idx == out.chosen[b].numpy()).all()
        # the gold reward is the chosen candidate's reward
        np.testing.assert_allclose(tf.r_gold, tf.cand_r[np.arange(len(tf)), tf.gold_idx], atol=1e-4)


def test_w0_cumulative_equals_loglik_ranking(tok, policy, rm_lm, encoder):
    ch = _tf(policy, tok, "shared", rm_lm, encoder, RESPONSES)
    rj = _tf(policy, tok, "shared", rm_lm, encoder, REJECTED)
    ll_c = np.array([_loglik(policy, tok, p, r) for p, r in zip(PROMPTS, RESPONSES)])
    ll_r = np.array([_loglik(policy, tok, p, r) for p, r in zip(PROMPTS, REJECTED)])
    np.testing.assert_allclose([t.logp.sum() for t in ch], ll_c, atol=1e-4)
    df = policy_accuracy.policy_accuracy(ch, rj, [0.0, 1.0, 5.0])
    assert df.accuracy[0] == pytest.approx(np.mean(ll_c > ll_r))
    # normalised at w = 0 ranks by mean log-prob per token
    lens = lambda rs: np.array([len(tok(r, add_special_tokens=False)["input_ids"]) + 1 for r in rs])  # noqa: E731 (+ EOS)
    dfn = policy_accuracy.policy_accuracy(ch, rj, [0.0], normalise=True)
    assert dfn.accuracy[0] == pytest.approx(np.mean(ll_c / lens(RESPONSES) > ll_r / lens(REJECTED)))
    # re-weighting equals the definition computed by hand
    w = 5.0
    s = lambda tfs: np.array([t.logp.sum() + w * t.r_gold.sum() for t in tfs])  # noqa: E731
    assert df.accuracy[2] == pytest.approx(np.mean(s(ch) > s(rj)))


def test_rgd_likelihood_full_vocab_at_w0_is_loglik(tok, policy, rm_lm, encoder):
    V = policy.config.vocab_size
    ch = _tf(policy, tok, "shared", rm_lm, encoder, RESPONSES, k=V)
    sc = policy_accuracy.sequence_scores(ch, [0.0], "rgd_likelihood")[:, 0]
    np.testing.assert_allclose(sc, [_loglik(policy, tok, p, r) for p, r in zip(PROMPTS, RESPONSES)], atol=1e-4)
    np.testing.assert_allclose(policy_accuracy.sequence_scores(ch, [0.0], "rgd_likelihood_smoothed")[:, 0], sc, atol=1e-6)
    # with a small k the candidate set shrinks, so the smoothed RGD likelihood is at least the log-likelihood;
    # the faithful one too where every token is in the top-k, and -inf elsewhere
    small = _tf(policy, tok, "shared", rm_lm, encoder, RESPONSES, k=3)
    assert (policy_accuracy.sequence_scores(small, [0.0], "rgd_likelihood_smoothed")[:, 0] >= sc - 1e-6).all()
    faithful, oos = policy_accuracy.sequence_scores(small, [0.0], "rgd_likelihood")[:, 0], policy_accuracy.out_of_support(small)
    assert (faithful[~oos] >= sc[~oos] - 1e-6).all() and (faithful[oos] == -np.inf).all()
    assert all(t.gold_in_topk.dtype == bool for t in small)


def test_rgd_likelihood_by_hand():
    tf = policy_accuracy.TeacherForced(logp=np.log([0.5]), r_gold=np.array([1.0]), cand_ids=np.array([[7, 8]]),
                                  cand_logp=np.log([[0.5, 0.3]]), cand_r=np.array([[1.0, 3.0]]), gold_idx=np.array([0]))
    w = 2.0
    s_gold, s_other = np.log(0.5) + w * 1.0, np.log(0.3) + w * 3.0
    want = s_gold - np.logaddexp(s_gold, s_other)
    for d in ("rgd_likelihood", "rgd_likelihood_smoothed"):
        assert policy_accuracy.sequence_scores([tf], [w], d)[0, 0] == pytest.approx(want)
    tf.gold_idx = np.array([-1])  # gold not among the candidates: smoothed, it joins them as an extra entry
    s_c0 = np.log(0.5) + w * 1.0
    want = s_gold - np.log(np.exp(s_gold) + np.exp(s_c0) + np.exp(s_other))
    assert policy_accuracy.sequence_scores([tf], [w], "rgd_likelihood_smoothed")[0, 0] == pytest.approx(want)
    assert policy_accuracy.sequence_scores([tf], [w], "rgd_likelihood")[0, 0] == -np.inf  # faithful: RGD cannot emit it
    with pytest.raises(ValueError, match="definition"):
        policy_accuracy.sequence_scores([tf], [w], "nope")


def test_bad_input_raises(tok, policy, rm_lm, encoder):
    with pytest.raises(ValueError, match="example 1: empty response"):
        _tf(policy, tok, "shared", rm_lm, encoder, ["a", "", "b"])
    with pytest.raises(ValueError, match="aligned"):
        policy_accuracy.policy_accuracy([], [], [0.0])


@pytest.mark.parametrize("kind", ["shared", "text"])
def test_many_reward_models_share_forwards_and_match_one_by_one(tok, policy, rm_lm, encoder, kind):
    from test_rgd import DummyRM

    backbone, fk = ("tiny", "lm_last") if kind == "shared" else ("tiny-enc", "encoder_mean")
    rms = {f"rm{s}": DummyRM(backbone, fk, 32, seed=s) for s in (11, 12, 13)}
    many = policy_accuracy.teacher_forced_many(policy, tok, rms, PROMPTS, RESPONSES, USERS, k=5, policy_name="tiny",
                                          featurizer=_feat(kind, rm_lm, encoder), progress=False)
    for key, rm in rms.items():
        one = policy_accuracy.teacher_forced(policy, tok, rm, PROMPTS, RESPONSES, USERS, k=5, policy_name="tiny",
                                        featurizer=_feat(kind, rm_lm, encoder), progress=False)
        for a, b in zip(many[key], one):
            np.testing.assert_allclose(a.r_gold, b.r_gold, atol=1e-5)
            np.testing.assert_allclose(a.cand_r, b.cand_r, atol=1e-5)
            assert (a.cand_ids == b.cand_ids).all()
    assert not np.allclose(many["rm11"][0].cand_r, many["rm12"][0].cand_r)  # the heads really differ
    with pytest.raises(ValueError, match="another backbone"):
        policy_accuracy.teacher_forced_many(policy, tok, {"a": rms["rm11"], "b": _rm("separate")}, PROMPTS, RESPONSES,
                                       USERS, policy_name="tiny", featurizer=_feat(kind, rm_lm, encoder), progress=False)


@pytest.mark.parametrize("kind", ["shared", "separate", "text"])
def test_batched_responses_equal_one_at_a_time(tok, policy, rm_lm, encoder, kind):
    """Left-padded batches of responses of different lengths give the one-at-a-time arrays."""
    prompts, users = PROMPTS * 2, USERS * 2
    responses = RESPONSES + ["a", "the cat sat on the mat and the dog sat on the cat", "news"]
    one = policy_accuracy.teacher_forced(policy, tok, _rm(kind), prompts, responses, users, k=5, policy_name="tiny",
                                    featurizer=_feat(kind, rm_lm, encoder), progress=False, batch_size=1)
    for bs, chunk in [(4, 4096), (6, 4096), (6, 7)]:  # chunk 7: candidate columns in several forwards
        many = policy_accuracy.teacher_forced(policy, tok, _rm(kind), prompts, responses, users, k=5, policy_name="tiny",
                                         featurizer=_feat(kind, rm_lm, encoder), progress=False, batch_size=bs,
                                         chunk_size=chunk)
        for a, b in zip(many, one):
            assert len(a) == len(b) and (a.cand_ids == b.cand_ids).all() and (a.gold_idx == b.gold_idx).all()
            for f in ("logp", "r_gold", "cand_logp", "cand_r"):
                np.testing.assert_allclose(getattr(a, f), getattr(b, f), atol=1e-4, err_msg=f)


def test_length_batches():
    assert policy_accuracy.length_batches([3, 9, 5, 9, 1], 2) == [[1, 3], [2, 0], [4]]
    assert policy_accuracy.length_batches([(2, 5), (3, 1), (2, 9)], 2) == [[1, 2], [0]]
    with pytest.raises(ValueError, match="batch_size"):
        policy_accuracy.length_batches([1], 0)


@pytest.mark.parametrize("kind", ["shared", "separate", "text"])
def test_response_sets_share_the_prompt_and_equal_separate_calls(tok, policy, rm_lm, encoder, kind):
    """Chosen and rejected against one forward of their prompt give the arrays of two separate calls."""
    kw = dict(k=4, policy_name="tiny", featurizer=_feat(kind, rm_lm, encoder), progress=False, batch_size=2)
    both = policy_accuracy.teacher_forced_sets(policy, tok, {"r": _rm(kind)}, PROMPTS, [RESPONSES, REJECTED], USERS, **kw)
    for j, side in enumerate([RESPONSES, REJECTED]):
        alone = policy_accuracy.teacher_forced_many(policy, tok, {"r": _rm(kind)}, PROMPTS, side, USERS, **kw)["r"]
        for a, b in zip(both[j]["r"], alone):
            assert (a.cand_ids == b.cand_ids).all() and (a.gold_idx == b.gold_idx).all()
            for f in ("logp", "r_gold", "cand_logp", "cand_r"):
                np.testing.assert_allclose(getattr(a, f), getattr(b, f), atol=1e-4, err_msg=f)


# ----------------------------------------------------------------------------- end token, per-pair outcomes
def test_responses_end_with_eos_whose_reward_is_the_full_response_feature(tok, policy):
    """The EOS step is scored like decoding's "stop" candidate: its reward is the head on the full-response
    feature notebook 02 trains on (LMFeaturizer: the state at the appended end token)."""
    from lib.rewards.features import LMFeaturizer

    rm = _rm("shared")
    tfs = policy_accuracy.teacher_forced(policy, tok, rm, PROMPTS, RESPONSES, USERS, k=5, policy_name="tiny", progress=False)
    feat = LMFeaturizer(policy, tok, name="tiny")
    full = rm.head(feat.features(PROMPTS, RESPONSES), rm.user_index(USERS)).detach().numpy()
    for tf, r, f in zip(tfs, RESPONSES, full):
        assert len(tf) == len(tok(r, add_special_tokens=False)["input_ids"]) + 1
        assert tf.r_gold[-1] == pytest.approx(f, abs=1e-4)


# ----------------------------------------------------------------------------- faithful RGD likelihood
def _toy(gold_idx, logp_gold=None, r_gold=None):
    """Two steps, three candidates (log-probs of the full vocabulary, so they need not sum to 1)."""
    cand_logp = np.log([[0.5, 0.2, 0.1], [0.6, 0.25, 0.05]])
    cand_r = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    gold_idx = np.asarray(gold_idx)
    rows = np.arange(2)
    logp = cand_logp[rows, np.maximum(gold_idx, 0)] if logp_gold is None else np.asarray(logp_gold)
    r = cand_r[rows, np.maximum(gold_idx, 0)] if r_gold is None else np.asarray(r_gold)
    return policy_accuracy.TeacherForced(logp=logp, r_gold=r, cand_ids=np.array([[3, 4, 5], [6, 7, 8]]),
                                         cand_logp=cand_logp, cand_r=cand_r, gold_idx=gold_idx)


def test_faithful_rgd_likelihood_in_support_is_the_log_softmax_sum():
    from scipy.special import log_softmax

    tf = _toy([1, 0])
    for w in (0.0, 1.0):
        want = sum(log_softmax(tf.cand_logp[t] + w * tf.cand_r[t])[g] for t, g in enumerate(tf.gold_idx))
        got = policy_accuracy.sequence_scores([tf], [w], "rgd_likelihood")
        assert got[0, 0] == pytest.approx(want)
        assert policy_accuracy.sequence_scores([tf], [w], "rgd_likelihood", normalise=True)[0, 0] == pytest.approx(want / 2)
    assert not policy_accuracy.out_of_support([tf])[0]


def test_out_of_support_token_is_minus_inf_faithful_and_finite_smoothed():
    from scipy.special import logsumexp

    tf = _toy([1, -1], logp_gold=[np.log(0.2), np.log(0.01)], r_gold=[-2.0, 4.0])  # step 2's gold is not in the top-k
    assert policy_accuracy.out_of_support([tf, _toy([0, 2])]).tolist() == [True, False]
    w = 1.0
    assert policy_accuracy.sequence_scores([tf], [0.0, w], "rgd_likelihood")[0].tolist() == [-np.inf, -np.inf]
    z = tf.cand_logp + w * tf.cand_r
    g1 = np.log(0.01) + w * 4.0  # the gold joins the candidates at step 2
    want = (z[0, 1] - logsumexp(z[0])) + (g1 - logsumexp(np.append(z[1], g1)))
    got = policy_accuracy.sequence_scores([tf], [w], "rgd_likelihood_smoothed")[0, 0]
    assert np.isfinite(got) and got == pytest.approx(want)


def test_minus_inf_scores_tie_win_or_lose():
    oos, ok = _toy([1, -1]), _toy([0, 0])
    acc = lambda c, r: policy_accuracy.policy_accuracy([c], [r], [0.0, 1.0], "rgd_likelihood")  # noqa: E731
    assert acc(oos, _toy([-1, 2])).accuracy.tolist() == [0.5, 0.5]  # both out of support: a tie
    assert acc(oos, _toy([-1, 2])).ties.tolist() == [1.0, 1.0]
    assert acc(oos, ok).accuracy.tolist() == [0.0, 0.0] and acc(ok, oos).accuracy.tolist() == [1.0, 1.0]
    m = policy_accuracy.score_margin([-np.inf, -np.inf, 1.0, 2.0], [-np.inf, 0.0, -np.inf, 0.5])
    assert m.tolist() == [0.0, -np.inf, np.inf, 1.5]
    assert policy_accuracy.outcome(m).tolist() == [0.5, 0.0, 1.0, 1.0]
    with np.errstate(invalid="ignore"):
        assert policy_accuracy.outcome(np.float64(-np.inf) - np.float64(-np.inf)) == 0.5  # NaN margin: a tie, not wrong
    assert policy_accuracy.outcome([-1.0, 0.0, 2.0]).tolist() == [0.0, 0.5, 1.0]


def test_output_layer_in_chunks_equals_per_row(policy):
    """The output layer over all rows' states at once, in chunks of any size, gives each row's own log-probs
    and top-k (the rows differ in length; chunk boundaries fall inside rows)."""
    from lib.core.kvcache import lm_logp

    g = torch.Generator().manual_seed(0)
    T = [5, 2, 7]
    d, V = policy.config.hidden_size, policy.get_output_embeddings().weight.shape[0]
    prev = torch.randn(len(T), max(T), d, generator=g).to(DEV)
    ys = [torch.randint(0, V, (t,), generator=g).tolist() for t in T]
    for max_elems in (V, 3 * V, 1 << 30):  # one row per chunk, three rows, everything at once
        gold, cands = policy_accuracy._logp_topk(policy, prev, T, ys, k=4, max_elems=max_elems)
        for n, t in enumerate(T):
            lp = lm_logp(policy, prev[n, :t])
            want = lp.topk(4, dim=-1)
            assert gold[n].shape == (t,) and cands[n][1].shape == (t, 4)
            torch.testing.assert_close(gold[n], lp.gather(1, torch.tensor(ys[n], device=DEV)[:, None])[:, 0])
            torch.testing.assert_close(cands[n][0], want[0])
            assert (cands[n][1] == want[1]).all()
