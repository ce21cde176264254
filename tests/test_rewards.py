"""Personalized reward models (lib/rewards/) on synthetic features with a planted per-user rule,
and the one-pass prefix path on a tiny random Llama with the SmolLM2 tokenizer."""
from __future__ import annotations

import copy
import random

import pytest
import torch

from lib import rewards as R
from lib.rewards import METHODS, PairFeatures, load_reward_model, rm_accuracy, train
from lib.rewards.pairs import _cut

PERSONALIZED = [m for m in METHODS if m != "bt"]
FEW_SHOT = ["user_embedding", "lore", "pal", "vpl"]  # share structure across users


def planted(n_seen=8, n_unseen=4, n_train=60, n_test=40, n_shot=10, d=16, shared=0.5, seed=0):
    """Users in two groups with opposite preference directions ``+-v`` plus a common ``shared`` part:
    chosen = the response with the higher ``(shared * s +- v) . x`` (a planted per-user rule)."""
    g = torch.Generator().manual_seed(seed)
    s, v = torch.randn(d, generator=g), torch.randn(d, generator=g)
    recs, C, Rj = [], [], []
    users = [(f"s{i}", "seen") for i in range(n_seen)] + [(f"u{i}", "unseen") for i in range(n_unseen)]
    for k, (user, grp) in enumerate(users):
        w = shared * s + (1 if k % 2 else -1) * v
        n_tr = n_train if grp == "seen" else n_shot
        for j in range(n_tr + n_test):
            a, b = torch.randn(d, generator=g), torch.randn(d, generator=g)
            if w @ a < w @ b:
                a, b = b, a
            recs.append(dict(pair_id=f"{user}-{j}", task="synthetic", user=user, user_group=grp,
                             split="train" if j < n_tr else "test", prompt="p", chosen="c", rejected="r"))
            C.append(a)
            Rj.append(b)
    return recs, PairFeatures("synthetic", "lm_last", [r["pair_id"] for r in recs], torch.stack(C), torch.stack(Rj))


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)
    return planted()


@pytest.fixture(scope="module")
def trained(data):
    recs, pf = data
    return {m: train(m, recs, pf, progress=False, device="cpu") for m in METHODS}


@pytest.fixture(scope="module")
def accuracy(data, trained):
    recs, pf = data
    return {m: rm_accuracy(rm, recs, pf, n_resamples=200) for m, rm in trained.items()}


@pytest.mark.parametrize("method", PERSONALIZED)
def test_personalized_beats_bt_on_seen_users(accuracy, method):
    bt, acc = accuracy["bt"]["rm_acc_seen"], accuracy[method]["rm_acc_seen"]
    assert acc >= 0.8 and acc >= bt + 0.15, (method, acc, bt)


@pytest.mark.parametrize("method", FEW_SHOT)
def test_few_shot_methods_beat_bt_on_unseen_users(accuracy, method):
    bt, acc = accuracy["bt"]["rm_acc_unseen"], accuracy[method]["rm_acc_unseen"]
    assert acc >= bt + 0.15, (method, acc, bt)


def test_accuracy_has_ci_and_counts(accuracy):
    a = accuracy["lore"]
    assert a["n_seen"] == 8 * 40 and a["n_unseen"] == 4 * 40
    for g in ("seen", "unseen"):
        assert a[f"ci_lo_{g}"] <= a[f"rm_acc_{g}"] <= a[f"ci_hi_{g}"] and a[f"ci_hi_{g}"] - a[f"ci_lo_{g}"] > 0


@pytest.mark.parametrize("method", PERSONALIZED)
def test_shuffling_user_ids_lowers_accuracy(data, trained, accuracy, method):
    recs, pf = data
    seen = sorted({r["user"] for r in recs if r["user_group"] == "seen"})
    perm = seen[:]
    random.Random(1).shuffle(perm)
    while any(a == b for a, b in zip(seen, perm)):  # a derangement: every user gets someone else's id
        random.Random(len(perm)).shuffle(perm)
    remap = dict(zip(seen, perm))
    shuffled = [dict(r, user=remap[r["user"]]) if r["user_group"] == "seen" else r for r in recs]
    assert rm_accuracy(trained[method], shuffled, pf, n_resamples=50)["rm_acc_seen"] < \
        accuracy[method]["rm_acc_seen"] - 0.1


def test_training_on_shuffled_users_is_worse(data):
    recs, pf = data
    rng = random.Random(0)
    seen = sorted({r["user"] for r in recs if r["user_group"] == "seen"})
    shuffled = [dict(r, user=rng.choice(seen)) if r["user_group"] == "seen" and r["split"] == "train" else r
                for r in recs]
    good = rm_accuracy(train("lore", recs, pf, progress=False), recs, pf, n_resamples=50)["rm_acc_seen"]
    bad = rm_accuracy(train("lore", shuffled, pf, progress=False), recs, pf, n_resamples=50)["rm_acc_seen"]
    assert bad < good - 0.1, (good, bad)


def test_training_is_deterministic(data):
    recs, pf = data
    a, b = (train("vpl", recs, pf, progress=False, seed=3) for _ in range(2))
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k


@pytest.mark.parametrize("method", list(METHODS))
def test_save_load_identical(tmp_path, data, trained, method):
    recs, pf = data
    rm = R.adapt_unseen(copy.deepcopy(trained[method]), recs, pf)  # saved with adapted unseen users
    x = torch.randn(5, 3, pf.dim)
    u = rm.user_index(["s0", "s1", "u0", "u1", "s3"])
    rm.save(tmp_path / method)
    assert sorted(p.name for p in (tmp_path / method).iterdir()) == ["config.json", "model.safetensors"]
    back = load_reward_model(tmp_path / method)
    assert back.users == rm.users and type(back) is type(rm) and back.metrics == rm.metrics
    assert torch.equal(back.head(x, u), rm.head(x, u))
    assert rm_accuracy(back, recs, pf, n_resamples=50) == rm_accuracy(rm, recs, pf, n_resamples=50)


@pytest.mark.parametrize("method", list(METHODS))
def test_head_is_shape_agnostic_and_casts(trained, method):
    rm = trained[method]
    x = torch.randn(4, 3, rm.dim)
    u = rm.user_index(["s0", "s1", "s2", "s3"])
    full = rm.head(x, u)
    assert full.shape == (4, 3) and full.dtype == torch.float32
    each = torch.stack([torch.stack([rm.head(x[b, k], u[b]) for k in range(3)]) for b in range(4)])
    torch.testing.assert_close(full, each)
    torch.testing.assert_close(rm.head(x.bfloat16(), u), rm.head(x.bfloat16().float(), u))
    assert rm.head(x.reshape(12, -1), u.repeat_interleave(3)).shape == (12,)


def test_vpl_latent_changes_the_reward(data, trained):
    recs, pf = data
    rm = trained["vpl"]
    x = (torch.randn(64, pf.dim) - rm.mu) / rm.sd
    z0, z1 = rm.Z[rm.user_index(["s0"])], rm.Z[rm.user_index(["s1"])]
    assert (z0 - z1).norm() > 0.1
    r0, r1 = rm.reward_z(x, z0), rm.reward_z(x, z1)
    assert (r0 - r1).abs().mean() > 0.1 * r0.abs().mean()
    # the encoder reads the context: users of opposite groups get different latents after adapt
    new = [dict(r, user="x_" + r["user"], pair_id=r["pair_id"]) for r in recs if r["user"] in ("s0", "s1")
           and r["split"] == "train"]
    pf2 = PairFeatures("synthetic", "lm_last", [r["pair_id"] for r in new], *pf.take(new))
    m = copy.deepcopy(rm).adapt_users(new, pf2)
    za, zb = m.Z[m.user_index(["x_s0"])], m.Z[m.user_index(["x_s1"])]
    assert (za - zb).norm() > 0.5 * (z0 - z1).norm()


def test_adapt_changes_only_user_rows(data, trained):
    recs, pf = data
    rm = copy.deepcopy(trained["lore"])
    before = {k: v.clone() for k, v in rm.state_dict().items()}
    rm.adapt("u0", [r for r in recs if r["split"] == "train"], pf)
    after = rm.state_dict()
    assert rm.users[-1] == "u0" and after["logits"].shape[0] == before["logits"].shape[0] + 1
    assert torch.equal(after["logits"][:-1], before["logits"]) and torch.equal(after["B"], before["B"])
    with pytest.raises(ValueError, match="already known"):
        rm.adapt("u0", recs, pf)
    with pytest.raises(KeyError, match="adapt"):
        trained["lore"].user_index(["nobody"])
    assert trained["bt"].user_index(["nobody"]).tolist() == [0]


def test_nan_features_stop_with_clear_error(data):
    recs, pf = data
    bad = PairFeatures(pf.backbone, pf.kind, pf.pair_ids, pf.chosen.clone(), pf.rejected.clone())
    bad.chosen[3, 0] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite features .*s0-3"):
        train("bt", recs, bad, progress=False)
    with pytest.raises(FloatingPointError, match="diverged|loss is"):
        train("pal", recs, pf, progress=False, lr=1e4, retries=0)


def test_mismatched_features_are_rejected(data, trained):
    recs, pf = data
    other = PairFeatures("other", "lm_last", pf.pair_ids, pf.chosen, pf.rejected)
    with pytest.raises(ValueError, match="do not match"):
        R.pair_correct(trained["lore"], recs[:3], other)
    with pytest.raises(KeyError, match="no features for pair_id"):
        pf.take([dict(recs[0], pair_id="missing")])


# ------------------------------------------------------------------ text path (tiny LM)
@pytest.fixture(scope="module")
def tiny_feat():
    from transformers import LlamaConfig, LlamaForCausalLM

    from lib.core.models import load_tokenizer
    from lib.rewards.features import LMFeaturizer

    tok = load_tokenizer("smollm2-135m")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg).eval().requires_grad_(False)
    return LMFeaturizer(model, tok, batch_size=4, name="tiny-llama")


def text_records(n_users=4, n=6):
    adj = ["short", "long", "happy", "sad", "formal", "casual"]
    return [dict(pair_id=f"t{u}-{j}", task="t", user=f"user{u}", user_group="seen", split="train" if j < n - 1 else "test",
                 prompt=f"Write a headline about topic {j}.", chosen=f"A {adj[(u + j) % 6]} headline number {j}!",
                 rejected=f"headline {j} " + "very " * (j % 3) + "plain")
            for u in range(n_users) for j in range(n)]


def test_score_prefixes_one_pass_equals_separate(tiny_feat):
    recs = text_records()
    pf = PairFeatures.compute(tiny_feat, recs, progress=False)
    rm = train("lore", recs, pf, progress=False, epochs=3)
    rm.featurizer = tiny_feat
    prompt, response = recs[0]["prompt"], "The quick brown fox, surprisingly, jumps over 12 lazy dogs."
    one = rm.score_prefixes(prompt, response, "user1")
    p, r = tiny_feat._ids(prompt, response)  # r ends with the appended end-of-sequence token
    assert r[-1] == tiny_feat.tok.eos_token_id and len(one) == len(r) - 1 > 5
    with torch.no_grad():
        sep = torch.stack([rm.head(tiny_feat.hidden([p + r[:t]])[0][0, -1], rm.user_index(["user1"]))[0]
                           for t in range(1, len(r) + 1)]).cpu()
    torch.testing.assert_close(one, sep[:-1], rtol=1e-4, atol=1e-5 * float(sep.abs().max()))
    # the full response is read at its end token, scored in a right-padded batch with other texts
    full = rm.score([prompt, "x", prompt], [response, "y", "z"], ["user1", "user0", "user2"])
    torch.testing.assert_close(full[0], sep[-1], rtol=1e-4, atol=1e-5)


def test_prefix_features_come_from_the_same_forward(tiny_feat):
    recs = text_records()
    pf = PairFeatures.compute(tiny_feat, recs, n_prefix=3, progress=False, seed=1)
    assert pf.prefix_chosen.shape == (len(recs), 3, tiny_feat.dim)
    torch.testing.assert_close(pf.chosen, tiny_feat.features([r["prompt"] for r in recs], [r["chosen"] for r in recs]),
                               rtol=1e-4, atol=1e-5)
    frac = torch.rand(len(recs), 3, generator=torch.Generator().manual_seed(1))
    i = 5
    one = tiny_feat.prefix_features(recs[i]["prompt"], recs[i]["rejected"])  # response tokens, not the end token
    torch.testing.assert_close(pf.prefix_rejected[i], one[_cut(frac[i], len(one)) - 1], rtol=1e-4, atol=1e-5)
    h = tiny_feat.pair_hidden([recs[i]["prompt"]], [[recs[i]["rejected"]]])[0][0]  # T + 1 states
    assert len(h) == len(one) + 1
    torch.testing.assert_close(pf.rejected[i], h[-1], rtol=1e-4, atol=1e-5)  # full = the end-token state
    rm = train("individual", recs, pf, prefix_train=True, progress=False, epochs=2)
    assert rm.train_hparams["prefix_train"] and rm.train_hparams["n_prefix"] == 3


def test_pair_hidden_forwards_each_prompt_once_and_equals_whole_sequences(tiny_feat):
    """Chosen and rejected against one cache of their prompt (left-padded prompts of different lengths)."""
    recs = text_records(2, 3)
    recs[1]["prompt"] = "A much longer prompt: " + "please write the best possible headline " * 6
    recs[2]["rejected"] = "x"
    prompts = [r["prompt"] for r in recs]
    sides = [[r["chosen"] for r in recs], [r["rejected"] for r in recs]]
    hs = tiny_feat.pair_hidden(prompts, sides)
    for j, side in enumerate(sides):
        for i, (p, resp) in enumerate(zip(prompts, side)):
            x, y = tiny_feat._ids(p, resp)
            whole = tiny_feat.hidden([x + y])[0][0, len(x):]
            torch.testing.assert_close(hs[j][i], whole, rtol=1e-4, atol=1e-5)
    pf = PairFeatures.compute(tiny_feat, recs, progress=False)
    torch.testing.assert_close(pf.rejected, torch.stack([h[-1] for h in hs[1]]))


def test_pair_hidden_forwards_each_distinct_text_once(tiny_feat, monkeypatch):
    """Preference sets repeat prompts (several comparisons of one post) and responses (one response in several
    pairs): each distinct prompt, and each distinct response of it, is forwarded once, and every row still gets the
    states of forwarding its own prompt + response alone."""
    recs = text_records(2, 3)
    p0, p1 = recs[0]["prompt"], "A much longer prompt: " + "please write the best possible headline " * 6
    prompts = [p0, p1, p0, p0, p1]
    chosen = ["alpha beta", "gamma", "alpha beta", "delta epsilon zeta", "gamma"]
    rejected = ["eta", "theta iota", "delta epsilon zeta", "eta", "kappa"]
    seen = []
    real = tiny_feat._slot_hidden
    monkeypatch.setattr(tiny_feat, "_slot_hidden", lambda ps, rls, progress: seen.append((ps, rls)) or real(ps, rls, progress))
    hs = tiny_feat.pair_hidden(prompts, [chosen, rejected])
    (ps, rls), = seen
    assert ps == [p0, p1] and [sorted(r) for r in rls] == [sorted({"alpha beta", "eta", "delta epsilon zeta"}),
                                                           sorted({"gamma", "theta iota", "kappa"})]
    for j, side in enumerate([chosen, rejected]):
        for i, (p, resp) in enumerate(zip(prompts, side)):
            x, y = tiny_feat._ids(p, resp)
            torch.testing.assert_close(hs[j][i], tiny_feat.hidden([x + y])[0][0, len(x):], rtol=1e-4, atol=1e-5)


def test_unreadable_feature_cache_names_the_file(tmp_path, tiny_feat):
    recs = text_records(2, 3)
    PairFeatures.compute(tiny_feat, recs, n_prefix=2, cache_dir=tmp_path, progress=False)
    (path,) = tmp_path.glob("tiny-llama-pairs-*.pt")
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(ValueError, match=f"{path.name}.*delete it"):
        PairFeatures.compute(tiny_feat, recs, n_prefix=2, cache_dir=tmp_path, progress=False)


def test_featurizer_and_cache(tmp_path, tiny_feat):
    recs = text_records(2, 3)
    a = PairFeatures.compute(tiny_feat, recs, n_prefix=2, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("tiny-llama-pairs-*.pt"))) == 1
    b = PairFeatures.compute(tiny_feat, recs, n_prefix=2, cache_dir=tmp_path, progress=False)
    assert torch.equal(a.prefix_chosen, b.prefix_chosen)
    rm = train("bt", recs, tiny_feat, progress=False, epochs=2, cache_dir=tmp_path)
    assert rm.backbone == "tiny-llama" and rm.feature_kind == "lm_last" and rm.dim == tiny_feat.dim
    assert rm.shares_policy("tiny-llama") and not rm.shares_policy("smollm2-135m")


def test_lora_finetuned_backbone_smoke(tmp_path, monkeypatch, tiny_feat):
    from transformers import LlamaForCausalLM

    from lib.rewards.features import LMFeaturizer

    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_feat.model.config).eval().requires_grad_(False)
    feat = LMFeaturizer(model, tiny_feat.tok, batch_size=4, name="tiny-llama")
    recs = text_records()
    frozen = feat.features([recs[0]["prompt"]], [recs[0]["chosen"]]).clone()
    rm = train("user_embedding", recs, feat, finetune="lora", epochs=3, lr=1e-2, progress=False)
    assert rm.finetuned and not rm.shares_policy("tiny-llama")
    assert len(rm.metrics["train_losses"]) == 3 and rm.metrics["val_rule"] == "fixed_epochs"
    assert rm.metrics["degenerate"] == "" and float(rm.cal_sd) > 0 and rm.metrics["cal_mu"] == float(rm.cal_mu)
    tuned = rm.featurizer.features([recs[0]["prompt"]], [recs[0]["chosen"]])
    assert not torch.allclose(tuned, frozen)  # the LoRA adapters moved the features
    score = rm.score([recs[0]["prompt"]], [recs[0]["chosen"]], ["user0"])
    assert score.shape == (1,)
    # saved with its adapters; reloading rebuilds base (by registry name) + LoRA
    import lib.core.models

    rm.save(tmp_path / "lora_rm")
    assert (tmp_path / "lora_rm" / "lora" / "adapter_config.json").exists()
    monkeypatch.setattr(lib.core.models, "load_causal_lm", lambda name, device=None: (copy.deepcopy(model), feat.tok))
    back = load_reward_model(tmp_path / "lora_rm")
    assert back.finetuned
    torch.testing.assert_close(back.score([recs[0]["prompt"]], [recs[0]["chosen"]], ["user0"]), score)


def test_train_lora_zoos_trains_every_backbone_and_dataset(tmp_path, monkeypatch, tiny_feat):
    """Notebook 02's LoRA cell (paper profile): one fine-tuned model per backbone x dataset x method x seed, saved with
    its adapters, no prefix variant; no backbone (smoke): nothing."""
    from transformers import LlamaForCausalLM

    from lib.rewards import features, rm_checks
    from lib.rewards.features import LMFeaturizer

    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_feat.model.config).eval().requires_grad_(False)
    made = []
    monkeypatch.setattr(features, "featurizer", lambda name, batch_size=16: made.append(name) or
                        LMFeaturizer(copy.deepcopy(model), tiny_feat.tok, batch_size=batch_size, name=name))
    data = {"t": text_records(2, 4), "u": text_records(2, 3)}
    rows, correct = rm_checks.train_lora_zoos(data, ["tiny-llama"], tmp_path, batch_size=4, methods=["bt"], seeds=[0],
                                              hparams={"epochs": 2, "lr": 1e-2}, n_resamples=10)
    assert made == ["tiny-llama"]
    assert [(r["task"], r["backbone"], r["prefix_train"]) for r in rows] == [("t", "tiny-llama+lora", False),
                                                                           ("u", "tiny-llama+lora", False)]
    assert set(correct) == {("t", "tiny-llama+lora", "bt", 0, False), ("u", "tiny-llama+lora", "bt", 0, False)}
    assert all((tmp_path / r["dir"] / "lora" / "adapter_config.json").exists() for r in rows)
    assert rm_checks.train_lora_zoos(data, [], tmp_path / "none", methods=["bt"], seeds=[0]) == ([], {})


def test_zoos_in_two_processes_equal_one(tmp_path):
    """Parallel zoo training is a pure speed-up: same index rows (wall clock aside), correctness and weights."""
    from lib.rewards import train_zoos

    recs, pf = planted(n_seen=4, n_unseen=2, n_train=20, n_test=10, n_shot=5)
    jobs = lambda root: [dict(records=recs, features=pf, task=t, out_root=root, methods=["bt", "lore", "vpl"],  # noqa: E731
                              seeds=[0, 1], hparams={"epochs": 5}, n_resamples=50) for t in ("A", "B")]
    rows1, c1 = train_zoos(jobs(tmp_path / "one"), n_jobs=1, progress=False)
    rows2, c2 = train_zoos(jobs(tmp_path / "two"), n_jobs=2, progress=False)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "train_seconds"} for r in rows]  # noqa: E731
    assert strip(rows1) == strip(rows2) and len(rows1) == 2 * 3 * 2
    assert c1.keys() == c2.keys() and all((c1[k]["seen"] == c2[k]["seen"]).all() for k in c1)
    for r in rows1:
        a, b = (load_reward_model(tmp_path / d / r["dir"]).state_dict() for d in ("one", "two"))
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_accuracy_ci_edge_cases():
    from lib.rewards.zoo import accuracy_ci

    assert all(v != v for v in accuracy_ci([]) + accuracy_ci([1.0]))  # NaN: fewer than 2 pairs
    assert accuracy_ci([0.5] * 7) == (0.5, 0.5)  # every pair a tie: no spread to resample
    # two pairs: resample means 0, 0.5, 1 with probability 1/4, 1/2, 1/4: the 2.5% / 97.5% points are 0 and 1
    assert accuracy_ci([0.0, 1.0], n_resamples=2000) == (0.0, 1.0)
