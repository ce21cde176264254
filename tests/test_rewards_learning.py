"""Every reward method learns (lib/rewards/): planted preferences, data shaped like real preference
data (30 annotators with 1-3 pairs each, 384-d features, a weak shared signal), the validation rule
for few pairs per user, the degenerate flag, divergence recovery, VPL's context and the calibration."""
from __future__ import annotations

import json
import math
import warnings

import pandas as pd
import pytest
import torch

from lib import rewards as R
from lib.rewards import METHODS, PairFeatures, fit, load_reward_model, rm_accuracy, train

PERSONALIZED = [m for m in METHODS if m != "bt"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    torch.set_num_threads(1)


def two_groups(n_users=8, n_train=40, n_test=30, d=16, seed=0, n_prefix=0):
    """Two user groups with opposite preferences on a planted direction v: chosen = higher ``+-v . x``."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(d, generator=g)
    recs, C, Rj = [], [], []
    for k in range(n_users):
        for j in range(n_train + n_test):
            a, b = torch.randn(d, generator=g), torch.randn(d, generator=g)
            if (1 if k % 2 else -1) * (v @ a - v @ b) < 0:
                a, b = b, a
            recs.append(dict(pair_id=f"s{k}-{j}", task="toy", user=f"s{k}", user_group="seen",
                             split="train" if j < n_train else "test", prompt="p", chosen="c", rejected="r"))
            C.append(a)
            Rj.append(b)
    pre = {}
    if n_prefix:  # prefix states: noisier, shifted versions of the full ones
        pre = {f"prefix_{s}": torch.stack(X)[:, None] + 0.5 + torch.randn(len(X), n_prefix, d, generator=g)
               for s, X in (("chosen", C), ("rejected", Rj))}
    return recs, PairFeatures("toy", "lm_last", [r["pair_id"] for r in recs], torch.stack(C), torch.stack(Rj), **pre)


def annotators(n_users=30, d=384, signal=2.0, n_test=4, seed=0):
    """Like real comparisons (TL;DR workers): 1-3 training pairs per annotator, 384-d features of long
    texts (a large common component, tiny variations), a weak signal shared by all annotators."""
    g = torch.Generator().manual_seed(seed)
    common, s = 3 * torch.randn(d, generator=g), torch.randn(d, generator=g)
    s /= s.norm()
    recs, C, Rj = [], [], []
    for k in range(n_users):
        n_tr = 1 + k % 3
        for j in range(n_tr + n_test):
            a = torch.randn(d, generator=g) + signal * s / 2
            b = torch.randn(d, generator=g) - signal * s / 2
            recs.append(dict(pair_id=f"w{k}-{j}", task="tldr", user=f"w{k}", user_group="seen",
                             split="train" if j < n_tr else "test", prompt="p", chosen="c", rejected="r"))
            C.append(common + 0.05 * a)
            Rj.append(common + 0.05 * b)
    return recs, PairFeatures("minilm-l6", "encoder_mean", [r["pair_id"] for r in recs], torch.stack(C), torch.stack(Rj))


# ------------------------------------------------------------------ every method learns
@pytest.fixture(scope="module")
def toy():
    recs, pf = two_groups()
    return recs, pf, {m: train(m, recs, pf, progress=False, device="cpu") for m in METHODS}


@pytest.mark.parametrize("method", PERSONALIZED)
def test_personalized_methods_learn_opposite_groups_with_defaults(toy, method):
    recs, pf, rms = toy
    acc = rm_accuracy(rms[method], recs, pf, n_resamples=20)["rm_acc_seen"]
    assert acc >= 0.8, (method, acc)
    assert rms[method].metrics["degenerate"] == "" and rms[method].metrics["best_epoch"] > 0


def test_bt_cannot_serve_opposite_groups(toy):
    recs, pf, rms = toy
    assert 0.35 <= rm_accuracy(rms["bt"], recs, pf, n_resamples=20)["rm_acc_seen"] <= 0.65


def test_pal_starts_random_and_its_user_weights_get_gradient():
    rm = R.PAL("toy", "lm_last", 16, ["a", "b"])
    assert rm.P.abs().sum() > 0
    x = torch.randn(2, 5, 16)
    r = rm.head(x, torch.tensor([0, 1]))
    assert r.std() > 0  # rewards differ between responses
    (r[:, 0] - r[:, 1]).sum().backward()
    assert rm.logits.grad.abs().sum() > 0 and rm.P.grad.abs().sum() > 0


# ------------------------------------------------------------------ data like real preference data
@pytest.fixture(scope="module")
def real_like():
    recs, pf = annotators()
    return recs, pf, {m: train(m, recs, pf, progress=False, device="cpu") for m in METHODS}


@pytest.mark.parametrize("method", list(METHODS))
def test_defaults_leave_the_initial_state_on_real_like_data(real_like, method):
    recs, pf, rms = real_like
    rm = rms[method]
    torch.manual_seed(0)  # the initial weights of train(seed=0)
    init = METHODS[method]("minilm-l6", "encoder_mean", pf.dim, rm.users)
    m = rm.metrics
    assert m["degenerate"] == "" and m["best_epoch"] > 0, m
    assert any(not torch.equal(p, q) for p, q in zip(rm.parameters(), init.parameters()))
    assert m["val_rule"] == "holdout" and m["n_val"] >= 8 and math.isfinite(m["val_acc"])
    c = R.pair_correct(rm, [r for r in recs if r["split"] == "test"], pf)
    assert (c != 0.5).mean() > 0.95  # no ties: the rewards rank the pairs


def test_bt_generalises_on_real_like_data(real_like):
    recs, pf, rms = real_like
    m = rms["bt"].metrics
    assert m["val_loss"] < m["init_val_loss"] - 0.01
    assert rm_accuracy(rms["bt"], recs, pf, n_resamples=20)["rm_acc_seen"] > 0.55


def test_validation_rule_with_one_to_three_pairs_per_user():
    recs, _ = annotators()
    tr_recs = [r for r in recs if r["split"] == "train"]
    val, tr = fit._val_split(tr_recs, 0.15, 8, seed=0)
    assert len(val) == round(0.15 * len(tr_recs)) >= 8  # the old per-user rule held out none
    assert {r["user"] for r in tr} == {r["user"] for r in tr_recs}  # every user keeps a training pair
    assert not {r["pair_id"] for r in val} & {r["pair_id"] for r in tr}
    assert fit._val_split(tr_recs, 0.15, 8, seed=0) == (val, tr)  # seeded


def test_too_few_validation_pairs_train_fixed_epochs():
    recs, pf = annotators(n_users=10)  # 19 training pairs: 3 validation pairs < 8
    rm = train("bt", recs, pf, progress=False, device="cpu", fixed_epochs=7)
    m, hp = rm.metrics, rm.train_hparams
    assert m["val_rule"] == hp["val_rule"] == "fixed_epochs" and m["n_val"] == 0 and hp["n_train"] == 19
    assert m["best_epoch"] == m["epochs_run"] == 7 and math.isnan(m["val_acc"]) and m["degenerate"] == ""


# ------------------------------------------------------------------ degenerate models are flagged
def test_untrained_model_is_flagged_with_a_warning():
    recs, pf = two_groups(n_users=4, n_train=10, n_test=2)
    with pytest.warns(UserWarning, match=r"degenerate.*method lore, backbone toy, task toy, seed 3.*initial weights"):
        rm = train("lore", recs, pf, progress=False, device="cpu", epochs=0, seed=3)
    assert rm.metrics["degenerate"] == "never left its initial weights"


def test_constant_rewards_are_flagged():
    recs, pf = two_groups(n_users=4, n_train=20, n_test=2)
    same = PairFeatures("toy", "lm_last", pf.pair_ids, torch.ones_like(pf.chosen), torch.ones_like(pf.rejected))
    with pytest.warns(UserWarning, match="constant rewards on its validation pairs"):  # PAL: one reward per user
        rm = train("pal", recs, same, progress=False, device="cpu", epochs=3)
    assert rm.metrics["degenerate"].startswith("constant rewards")
    with pytest.warns(UserWarning, match="initial weights"):  # bt: zero features, zero gradient, one reward
        bt = train("bt", recs, same, progress=False, device="cpu", epochs=3)
    assert bt.metrics["cal_sd"] == 1.0 and float(bt.cal_sd) == 1.0


def test_zoo_index_and_table_show_the_flag(tmp_path):
    recs, pf = two_groups(n_users=4, n_train=10, n_test=4)
    with pytest.warns(UserWarning, match="degenerate"):
        rows, correct = R.train_zoo(recs, pf, "toy", tmp_path, methods=["bt", "lore"], seeds=[0, 1],
                                    hparams={"epochs": 0}, n_resamples=20, progress=False)
    ok, _ = R.train_zoo(recs, pf, "toy", tmp_path, methods=["lore"], seeds=[0], n_resamples=20, progress=False)
    index = pd.DataFrame(rows + ok)
    assert {"degenerate", "val_rule", "n_val", "lr"} <= set(index.columns)
    assert (index.degenerate[:4] == "never left its initial weights").all() and index.degenerate[4] == ""
    index = pd.read_csv(pd.io.common.StringIO(index.to_csv(index=False)))  # as notebooks read index.csv
    table = R.accuracy_table(index, correct, n_resamples=20)
    by = table.set_index("method")
    assert by.loc["bt", "degenerate"] == 2 and by.loc["bt", "seeds"] == 0 and math.isnan(by.loc["bt", "rm_acc_seen"])


# ------------------------------------------------------------------ divergence
def test_divergence_is_retried_with_a_smaller_lr(monkeypatch):
    recs, pf = two_groups(n_users=4, n_train=10, n_test=2)
    real_fit, lrs = fit._fit, []

    def flaky(method, pf, tr, val, users, hp, *a):
        lrs.append(hp["lr"])
        if hp["lr"] > 2e-5:
            raise FloatingPointError("train pal: training loss diverged to 22.6 at epoch 4")
        return real_fit(method, pf, tr, val, users, hp, *a)

    monkeypatch.setattr(fit, "_fit", flaky)
    with pytest.warns(UserWarning, match="retrying with lr 0.0001"):
        rm = train("pal", recs, pf, progress=False, device="cpu", lr=1e-3)
    assert lrs == [1e-3, 1e-4, 1e-5] and rm.train_hparams["lr"] == 1e-5 and rm.train_hparams["retries"] == 2


def test_zoo_skips_a_model_that_keeps_diverging(tmp_path, monkeypatch):
    recs, pf = two_groups(n_users=4, n_train=10, n_test=2)
    real_fit = fit._fit

    def diverge(method, *a):
        if method == "pal":
            raise FloatingPointError("train pal: training loss diverged to 22.6 at epoch 4")
        return real_fit(method, *a)

    monkeypatch.setattr(fit, "_fit", diverge)
    with pytest.warns(UserWarning, match="toy/pal-toy-0-full skipped.*diverged"):
        rows, correct = R.train_zoo(recs, pf, "toy", tmp_path, methods=["bt", "pal"], n_resamples=20, progress=False)
    pal = rows[1]
    assert pal["degenerate"].startswith("diverged: train pal") and pal["dir"] == "" and math.isnan(pal["rm_acc_seen"])
    assert not (tmp_path / "toy" / "pal-toy-0-full").exists() and ("toy", "toy", "pal", 0, False) not in correct
    assert rows[0]["degenerate"] == "" and rows[0].keys() == pal.keys()
    table = R.accuracy_table(pd.DataFrame(rows), correct, n_resamples=20).set_index("method")
    assert table.loc["pal", "degenerate"] == 1 and math.isnan(table.loc["pal", "rm_acc_seen"])
    assert table.loc["bt", "degenerate"] == 0 and table.loc["bt", "seeds"] == 1


def test_a_huge_lr_really_diverges_and_is_reported():
    recs, pf = two_groups(n_users=4, n_train=10, n_test=2)
    with pytest.raises(FloatingPointError, match=r"(diverged|loss is).*after 1 retries"), pytest.warns(UserWarning):
        train("pal", recs, pf, progress=False, device="cpu", lr=1e5, retries=1, max_grad_norm=None)


# ------------------------------------------------------------------ VPL's context
def test_vpl_context_never_contains_the_pair_scored(monkeypatch):
    users = ["a", "b", "c"]
    u = torch.tensor([0, 1, 0, 2, 1, 0, 1])  # a: 3 pairs, b: 3 pairs, c: 1 pair
    xc = torch.arange(1, 8, dtype=torch.float)[:, None].repeat(1, 4)  # pair i's diff is (i + 1) everywhere
    xr = torch.zeros(7, 4)
    rm = R.VPL("toy", "lm_last", 4, users, n_context=50)
    rm.prepare(xc, xr, u)
    seen = []
    encode = rm.encode
    monkeypatch.setattr(rm, "encode", lambda d, mask=None: seen.append((d, mask)) or encode(d, mask))
    rm.pair_logits(xc, xr, u, torch.arange(7))
    ctx, mask = seen[-1]
    for i in range(7):
        ids = set(ctx[i, mask[i], 0].long().tolist())
        others = {j + 1 for j in range(7) if u[j] == u[i] and j != i}
        assert ids == others, (i, ids, others)  # every other pair of the user, never its own
    assert not mask[3].any()  # user c's only pair: empty context


# ------------------------------------------------------------------ calibration and standardisation
def test_calibration_is_the_reward_scale_on_training_prefixes_and_full_responses(tmp_path):
    recs, pf = two_groups(n_users=4, n_train=10, n_test=4, n_prefix=3)
    rm = train("lore", recs, pf, progress=False, device="cpu", fixed_epochs=20)  # 40 pairs: every one trains
    assert rm.metrics["val_rule"] == "fixed_epochs"
    tr = [r for r in recs if r["split"] == "train"]
    u = rm.user_index([r["user"] for r in tr])
    (c, r_), (pc, pr) = pf.take(tr), pf.take(tr, prefixes=True)
    allf = torch.cat([c, r_, pc.reshape(-1, pf.dim), pr.reshape(-1, pf.dim)])
    torch.testing.assert_close(rm.mu, allf.mean(0))  # standardised with prefix and full features
    with torch.no_grad():
        rew = torch.cat([rm.head(x, u).flatten() for x in (c, r_, pc, pr)])
    torch.testing.assert_close(rm.cal_mu, rew.mean())
    torch.testing.assert_close(rm.cal_sd, rew.std())
    x, ui = torch.randn(5, 2, pf.dim), rm.user_index(["s0", "s1", "s2", "s3", "s0"])
    with torch.no_grad():
        torch.testing.assert_close(rm.guidance(x, ui), (rm.head(x, ui) - rew.mean()) / rew.std())
        rm.calibrated = False
        torch.testing.assert_close(rm.guidance(x, ui), rm.head(x, ui))
    rm.calibrated = True
    rm.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["metrics"]["cal_sd"] == pytest.approx(float(rew.std())) and cfg["metrics"]["degenerate"] == ""
    back, raw = load_reward_model(tmp_path / "m"), load_reward_model(tmp_path / "m", calibrated=False)
    assert back.calibrated and not raw.calibrated
    with torch.no_grad():
        torch.testing.assert_close(back.guidance(x, ui), rm.guidance(x, ui))
        torch.testing.assert_close(raw.guidance(x, ui), rm.head(x, ui))


def test_full_features_only_calibration_and_adapted_users_keep_it():
    recs, pf = two_groups(n_users=4, n_train=10, n_test=4)
    rm = train("user_embedding", recs, pf, progress=False, device="cpu")
    assert rm.cal_sd > 0 and rm.metrics["cal_mu"] == pytest.approx(float(rm.cal_mu))
    cal = (rm.cal_mu.clone(), rm.cal_sd.clone())
    new = [dict(r, user="new", pair_id=r["pair_id"]) for r in recs if r["user"] == "s1" and r["split"] == "train"]
    rm.adapt_users(new, pf)
    assert torch.equal(rm.cal_mu, cal[0]) and torch.equal(rm.cal_sd, cal[1])


def test_models_saved_before_calibration_still_load(tmp_path):
    recs, pf = two_groups(n_users=4, n_train=10, n_test=2)
    rm = train("bt", recs, pf, progress=False, device="cpu", epochs=3)
    rm.save(tmp_path / "old")
    from safetensors.torch import load_file, save_file

    state = load_file(tmp_path / "old" / "model.safetensors")
    save_file({k: v for k, v in state.items() if not k.startswith("cal_")}, tmp_path / "old" / "model.safetensors")
    back = load_reward_model(tmp_path / "old")
    x = torch.randn(3, pf.dim)
    torch.testing.assert_close(back.guidance(x, [0, 0, 0]), rm.head(x, [0, 0, 0]))


def test_model_pt_of_older_releases_loads_with_one_future_warning(tmp_path, monkeypatch):
    """Folders written before safetensors (model.pt, a torch pickle) give the same rewards, warn once per process,
    and convert by load + save; a damaged safetensors file or a folder without weights is an error naming it."""
    from lib.rewards import base

    recs, pf = two_groups(n_users=4, n_train=10, n_test=2)
    rm = train("individual", recs, pf, progress=False, device="cpu", epochs=3)
    rm.save(tmp_path / "new")
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["config.json", "model.safetensors"]
    for name in ("a", "b"):  # what RewardModel.save wrote before this release
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text((tmp_path / "new" / "config.json").read_text())
        torch.save({k: v.detach().cpu() for k, v in rm.state_dict().items()}, tmp_path / name / "model.pt")
    monkeypatch.setattr(base, "_warned_legacy", False)
    with pytest.warns(FutureWarning, match=r"a/model\.pt: reward models saved as model\.pt .* load_reward_model\(d\)\.save\(d\)"):
        old = load_reward_model(tmp_path / "a")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second legacy folder loads silently
        load_reward_model(tmp_path / "b")
    x, u = torch.randn(6, pf.dim), rm.user_index([r["user"] for r in recs[:6]])
    assert torch.equal(old.head(x, u), rm.head(x, u))
    assert torch.equal(load_reward_model(tmp_path / "new").head(x, u), rm.head(x, u))
    old.save(tmp_path / "a")  # the conversion the warning names
    assert not (tmp_path / "a" / "model.pt").exists()
    assert torch.equal(load_reward_model(tmp_path / "a").head(x, u), rm.head(x, u))
    (tmp_path / "a" / "model.safetensors").write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match=r"a/model\.safetensors: not a readable safetensors file"):
        load_reward_model(tmp_path / "a")
    (tmp_path / "a" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"a: no model\.safetensors \(nor the older model\.pt\)"):
        load_reward_model(tmp_path / "a")
