"""Measured steering strength of RGD: steering_kl, kl_to_base and step_scale (lib.evaluation.policy_accuracy)."""
import numpy as np
import pytest
from scipy.special import logsumexp, rel_entr, softmax

from lib.evaluation.policy_accuracy import TeacherForced, kl_to_base, steering_kl, step_scale

CAND_LOGP = np.log([[0.5, 0.2, 0.1], [0.3, 0.3, 0.25]])  # full-vocabulary log-probs of the top-3: sum < 1
CAND_R = np.array([[1.0, -0.5, 2.0], [0.2, 0.0, -1.0]])


def _tf(cand_r=CAND_R, cand_logp=CAND_LOGP):
    T, k = cand_r.shape
    return TeacherForced(logp=cand_logp[:, 0], r_gold=cand_r[:, 0], cand_ids=np.arange(T * k).reshape(T, k),
                         cand_logp=cand_logp, cand_r=cand_r, gold_idx=np.zeros(T, dtype=np.int64))


def test_steering_kl_by_hand():
    tf = _tf()
    for w in (0.5, -3.0):
        q0 = softmax(CAND_LOGP, axis=-1)
        qw = softmax(CAND_LOGP + w * CAND_R, axis=-1)
        want = rel_entr(qw, q0).sum(-1).mean()
        assert steering_kl([tf], [w])[0, 0] == pytest.approx(want)
        assert steering_kl([tf], [2 * w], scale=2.0)[0, 0] == pytest.approx(want)
        assert kl_to_base([tf], [w])[0, 0] == pytest.approx(rel_entr(qw, np.exp(CAND_LOGP)).sum(-1).mean())


def test_steering_kl_is_zero_at_w0_nonnegative_and_increasing_in_abs_w():
    ws = np.array([0.0, 0.1, 0.5, 1.0, 2.0, 5.0])
    tfs = [_tf(), _tf(CAND_R[::-1].copy(), CAND_LOGP[::-1].copy())]
    for sign in (1, -1):
        kl = steering_kl(tfs, sign * ws)
        assert kl.shape == (2, len(ws)) and (kl[:, 0] == 0).all() and (kl >= 0).all()
        assert (np.diff(kl, axis=1) > 0).all()


def test_kl_to_base_adds_the_truncation_term():
    ws = [0.0, 1.0, -2.0]
    trunc = -logsumexp(CAND_LOGP, axis=-1).mean()
    assert trunc > 0
    np.testing.assert_allclose(kl_to_base([_tf()], ws) - steering_kl([_tf()], ws), trunc, rtol=1e-12)
    assert kl_to_base([_tf()], [0.0])[0, 0] == pytest.approx(trunc)


def test_step_scale_puts_rescaled_rewards_on_one_w_axis():
    a, b = _tf(), _tf(10 * CAND_R)
    assert step_scale([a]) == pytest.approx(CAND_R.std(-1).mean()) and step_scale([a]) > 0
    assert step_scale([b]) == pytest.approx(10 * step_scale([a]))
    ws = [0.5, 1.0, 3.0]
    assert (np.abs(steering_kl([a], ws) - steering_kl([b], ws)) > 1e-3).all()
    np.testing.assert_allclose(steering_kl([a], ws, step_scale([a])), steering_kl([b], ws, step_scale([b])), rtol=1e-9)
    np.testing.assert_allclose(steering_kl([a], np.divide(ws, step_scale([a]))),
                               steering_kl([b], np.divide(ws, step_scale([b]))), rtol=1e-9)


def test_step_scale_and_scale_errors():
    with pytest.raises(ValueError, match="at least one"):
        step_scale([])
    for c in (0.0, 2.5):
        with pytest.raises(ValueError, match="constant across candidates"):
            step_scale([_tf(np.full_like(CAND_R, c))])
    # constant within each step but not across steps: RGD's softmax sees no spread either
    with pytest.raises(ValueError, match="constant across candidates"):
        step_scale([_tf(np.array([[1.0] * 3, [-4.0] * 3]))])
    with pytest.raises(ValueError, match="scale"):
        steering_kl([_tf()], [1.0], scale=0.0)
