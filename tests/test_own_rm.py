"""Own reward model entry point: a tiny random sequence-classification checkpoint (save_pretrained) evaluated
with a tiny random policy folder; RM accuracy checked against the checkpoint's own logits."""

import json

import numpy as np
import pytest
import torch

from lib.core import models
from lib.evaluation import own_rm
from tests._tiny import tiny_lm, tiny_tokenizer


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared 2-core machine: threads only contend
    yield
    torch.set_num_threads(n)


WORDS = ["stock market falls today", "team wins election vote", "new study shows deep learning results",
         "rain and sun in the city", "music film game news", "health food travel news"]


def _seq_cls(out, seed):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, num_labels=1, pad_token_id=tok.pad_token_id)
    LlamaForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    tok = tiny_tokenizer()
    tiny_lm(tok).save_pretrained(root / "policy")
    tok.save_pretrained(root / "policy")
    pairs = [{"pair_id": f"p{i}", "user": f"u{i % 2}", "prompt": f"generate a headline for this article : {WORDS[i]}",
              "chosen": WORDS[(i + 1) % 6], "rejected": WORDS[(i + 3) % 6]} for i in range(6)]
    return root, _seq_cls(root / "rm_a", 1), _seq_cls(root / "rm_b", 2), pairs


def _direct_rm_acc(rm_dir, pairs):
    model, tok = models.load_sequence_classifier(str(rm_dir), device="cpu")
    feat = own_rm.LogitFeaturizer(model, tok, "x")
    c = feat.features([p["prompt"] for p in pairs], [p["chosen"] for p in pairs])[:, 0]
    r = feat.features([p["prompt"] for p in pairs], [p["rejected"] for p in pairs])[:, 0]
    return float(np.mean(np.where(c > r, 1.0, np.where(c == r, 0.5, 0.0))))


def test_hf_checkpoint_rm_and_policy_accuracy(setup):
    root, rm_a, rm_b, pairs = setup
    a = own_rm.evaluate_reward_model(str(rm_a), pairs, policy=str(root / "policy"), ws=(0.0, 2.0), k=3, device="cpu")
    b = own_rm.evaluate_reward_model(str(rm_b), pairs, policy=str(root / "policy"), ws=(0.0, 2.0), k=3, device="cpu")
    assert a["n_pairs"] == 6 and a["rm_acc"] == pytest.approx(_direct_rm_acc(rm_a, pairs))
    assert b["rm_acc"] == pytest.approx(_direct_rm_acc(rm_b, pairs))
    pa = a["policy_acc"]
    assert len(pa) == 2 * 2 * 2 and set(pa.w) == {0.0, 2.0} and pa.policy_acc.between(0, 1).all()
    # at w = 0 the score is the policy's own likelihood: the same whatever the reward model
    at0 = lambda res: res["policy_acc"].query("w == 0").policy_acc.tolist()  # noqa: E731
    assert at0(a) == at0(b)
    sa = own_rm.load_own_rm(str(rm_a), device="cpu")
    assert isinstance(sa, own_rm.SequenceClassifierRM) and not sa.calibrated
    tab = own_rm.table(a)
    assert list(tab.columns) == ["definition", "normalise", "policy_acc@w=0", "policy_acc@w=2", "rm_acc", "n_pairs"]


def test_rewards_reach_the_policy_score(setup):
    """With a large w, the cumulative RGD score of a response is dominated by the rewards: it must change."""
    from lib.evaluation.policy_accuracy import sequence_scores, teacher_forced

    root, rm_a, _, pairs = setup
    model, tok = models.load_causal_lm(str(root / "policy"), device="cpu")
    rm = own_rm.load_own_rm(str(rm_a), device="cpu")
    tfs = teacher_forced(model, tok, rm, [p["prompt"] for p in pairs], [p["chosen"] for p in pairs],
                         [p["user"] for p in pairs], k=3, progress=False)
    s = sequence_scores(tfs, [0.0, 100.0])
    direct = rm.featurizer.features([pairs[0]["prompt"]], [pairs[0]["chosen"]])[0, 0]
    assert tfs[0].r_gold[-1] == pytest.approx(float(direct), abs=1e-4)  # the full response's reward is its logit
    assert not np.allclose(s[:, 0], s[:, 1])


def test_bad_pairs_and_bad_checkpoints_are_named(setup, tmp_path):
    root, rm_a, _, pairs = setup
    with pytest.raises(KeyError, match=r"record 2 \('p1'\) has no field\(s\) \['user'\]"):
        own_rm.check_pairs([pairs[0], {k: v for k, v in pairs[1].items() if k != "user"}])
    with pytest.raises(ValueError, match=r"field\(s\) \['chosen'\] must be non-empty"):
        own_rm.check_pairs([{**pairs[0], "chosen": " "}])
    with pytest.raises(ValueError, match="not a sequence-classification checkpoint"):
        own_rm.load_own_rm(str(root / "policy"))
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tok = tiny_tokenizer()
    LlamaForSequenceClassification(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                                num_hidden_layers=1, num_attention_heads=4, num_labels=3,
                                                pad_token_id=0)).save_pretrained(tmp_path / "three")
    tok.save_pretrained(tmp_path / "three")
    with pytest.raises(ValueError, match="num_labels=3"):
        own_rm.load_own_rm(str(tmp_path / "three"), device="cpu")


def test_cli_prints_the_table(setup, tmp_path, capsys):
    root, rm_a, _, pairs = setup
    f = tmp_path / "pairs.jsonl"
    f.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    assert own_rm.main(["--rm", str(rm_a), "--pairs", str(f), "--policy", str(root / "policy"), "--ws", "0", "1",
                        "--k", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "policy_acc@w=1" in out and "cumulative" in out and "rgd_likelihood" in out
