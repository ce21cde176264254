"""Behavioural evaluation: rows, scoring, rule following, cache/resume, user independence."""
import json

import pandas as pd
import pytest
import torch

from lib import rewards
from lib.core import schema
from lib.decoding import greedy
from lib.evaluation import generation, metrics

from _tiny import query, tiny_lm, tiny_tokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lm():
    tok = tiny_tokenizer()
    return tiny_lm(tok), tok


def queries():
    qs = [query(f"q{i}", user=f"u{i % 2}", rule="question" if i % 2 else None, n_profile=3) for i in range(4)]
    qs[0]["task"] = qs[2]["task"] = "LaMP-4"
    return qs


def fake_rgd(model, tok, rms, messages, users, ws, max_new_tokens):
    """Deterministic stand-in for lib.decoding.rgd: a string that depends on each row's rm and w (and ends in '?')."""
    assert len(rms) == len(messages) == len(users) == len(ws)
    return [f'"stock {rm} w{w} market?"\nsecond line' for rm, w in zip(rms, ws)]


class Boom:
    def __getattr__(self, name):
        raise AssertionError("the model was called although every generation is cached")


def run(model, tok, qs, cache_dir, **kw):
    return generation.evaluate(qs, model, tok, "tiny", icl_ks=(1, 2), rms={"rmA": "rmA", "rmB": "rmB"}, ws=(0.0, 2.0),
                             rgd_fn=fake_rgd, rgd_tag="fake", max_new_tokens=6, batch_size=3,
                             cache_dir=cache_dir, progress=False, **kw)


def test_rows_scores_and_rules(lm, tmp_path):
    model, tok = lm
    df = run(model, tok, queries(), tmp_path)
    assert list(df.columns) == generation.ROW_COLUMNS
    assert len(df) == 4 * (1 + 2 + 2 * 2)
    assert df.groupby("system").size().to_dict() == {"base": 4, "icl": 8, "rgd": 16}
    # ROUGE is recomputed from the cleaned generation against the reference
    ref = metrics.rouge_scores(df.generation, df.reference)
    assert df.rouge1.tolist() == pytest.approx(ref.rouge1.tolist())
    rgd = df[df.system == "rgd"]
    steered = rgd[rgd.param == 2.0]
    assert set(steered.generation) == {"stock rmA w2.0 market?", "stock rmB w2.0 market?"}  # cleaned: first line, unquoted
    r = steered.sort_values(["rm", "query_id"]).iloc[0]
    assert r.rouge1 == pytest.approx(metrics.rouge([r.generation], [r.reference])["rouge1"])
    # w = 0 is the base policy exactly: its rows are the base rows, not a decode
    base_gen = df[df.system == "base"].set_index("query_id").generation
    for _, row in rgd[rgd.param == 0.0].iterrows():
        assert row.generation == base_gen[row.query_id]
    # follows_rule only where the user has a rule
    ruled = df[df.query_id.isin(["q1", "q3"])]
    assert ruled[(ruled.system == "rgd") & (ruled.param == 2.0)].follows_rule.all()
    assert df[df.query_id.isin(["q0", "q2"])].follows_rule.isna().all()
    # base equals plain greedy decoding of the zero-shot prompt
    from lib.data.preflamp import clean_generation

    base = df[(df.system == "base") & (df.query_id == "q0")].generation.iloc[0]
    assert base == clean_generation(greedy.greedy_generate(model, tok, [queries()[0]["prompt"]], 6)[0])
    assert (df[df.system == "icl"].n_examples > 0).all()


def test_cache_resume_and_user_independence(lm, tmp_path):
    model, tok = lm
    full = run(model, tok, queries(), tmp_path, user_block=1)
    again = run(Boom(), tok, queries(), tmp_path, user_block=1)  # every generation comes from the cache
    pd.testing.assert_frame_equal(full, again)
    # drop a few cached entries: only those batches are regenerated, same result
    f = sorted((tmp_path / "tiny").glob("*.json"))[0]
    d = json.loads(f.read_text())
    d["generations"] = dict(list(d["generations"].items())[:3])
    f.write_text(json.dumps(d))
    pd.testing.assert_frame_equal(full, run(model, tok, queries(), tmp_path, user_block=1))
    # blocks of one user: one user at a time (fresh cache) gives the same rows as all users together
    parts = [run(model, tok, [q for q in queries() if q["user"] == u], tmp_path / "solo", user_block=1)
             for u in ("u0", "u1")]
    pd.testing.assert_frame_equal(full, generation.sort_rows(pd.concat(parts, ignore_index=True)))


def test_user_blocks():
    assert generation.user_blocks(["c", "a", "b", "a", "d"], 3) == [["a", "b", "c"], ["d"]]
    with pytest.raises(ValueError):
        generation.user_blocks(["a"], 0)


def test_bad_queries():
    q = queries()
    del q[1]["reference"]
    with pytest.raises(KeyError, match="record 1 .*'reference'"):
        generation.check_queries(q)
    with pytest.raises(ValueError, match="duplicate"):
        generation.check_queries([queries()[0], queries()[0]])


def test_rgd_without_fn_is_an_error(lm, tmp_path):
    model, tok = lm
    with pytest.raises(ValueError, match="rgd_fn"):
        generation.evaluate(queries()[:1], model, tok, "tiny", icl_ks=(), rms={"a": None}, ws=(1.0,),
                          max_new_tokens=2, progress=False)


def test_rgd_through_lib_rgd(lm, tmp_path):
    """Real lib.decoding.rgd via rgd_adapter with a per-user head on the policy's own states (shared path)."""
    from lib.rewards import Individual

    model, tok = lm
    rm = Individual("tiny", "lm_last", model.config.hidden_size, ["u0", "u1"])
    torch.manual_seed(1)
    rm.W.data.normal_(0, 3.0)
    fn, tag = generation.rgd_adapter("tiny", k=4)
    df = generation.evaluate(queries(), model, tok, "tiny", icl_ks=(), rms={"ind": rm}, ws=(0.0, 5.0), rgd_fn=fn,
                           rgd_tag=tag, max_new_tokens=6, batch_size=4, cache_dir=tmp_path, progress=False)
    base = df[df.system == "base"].set_index("query_id").generation
    w0 = df[(df.system == "rgd") & (df.param == 0.0)].set_index("query_id").generation
    w5 = df[(df.system == "rgd") & (df.param == 5.0)].set_index("query_id").generation
    assert w0.to_dict() == base.to_dict()  # w = 0 is plain greedy decoding
    assert (w5 != base).any()  # a strong reward changes what is generated


def test_unknown_user_error_or_skip(lm, tmp_path):
    from lib.rewards import Individual

    model, tok = lm
    rm = Individual("tiny", "lm_last", model.config.hidden_size, ["u0"])  # does not know u1
    kw = dict(icl_ks=(), rms={"ind": rm}, ws=(1.0,), rgd_fn=fake_rgd, max_new_tokens=2, progress=False)
    with pytest.raises(KeyError, match="u1"):
        generation.evaluate(queries(), model, tok, "tiny", **kw)
    with pytest.warns(UserWarning, match="skipped for 1"):
        df = generation.evaluate(queries(), model, tok, "tiny", unknown_users="skip", **kw)
    assert set(df[df.system == "rgd"].user) == {"u0"} and set(df[df.system == "base"].user) == {"u0", "u1"}


def test_results_roundtrip_limit_and_fingerprint(lm, tmp_path):
    from lib.rewards import Individual

    model, tok = lm
    qs = queries() + [query("q9", user="u0")]
    assert [q["query_id"] for q in generation.limit_queries(qs, 1)] == ["q0", "q1"]
    df = run(model, tok, qs, tmp_path)
    back = schema.read_results(schema.write_results(df, tmp_path / "g.csv"))
    assert back.shape == df.shape and back.rouge1.tolist() == pytest.approx(df.rouge1.tolist())
    with pytest.raises(FileNotFoundError, match="notebook 05"):
        schema.read_results(tmp_path / "none.csv")
    rm = Individual("tiny", "lm_last", 32, ["u0"])
    f0 = generation.rm_fingerprint(rm)
    rm.W.data += 1
    assert generation.rm_fingerprint(rm) != f0  # retrained weights never hit a stale cache entry


def test_select_rms_filters_and_policy_backbone():
    idx = pd.DataFrame([{"task": t, "rm": f"{m}-{b}-{s}", "method": m, "backbone": b, "seed": s, "prefix_train": p}
                        for t in ("LaMP-4", "LaMP-5") for m in ("bt", "vpl") for b in ("smollm2-135m", "gemma3-270m")
                        for s in (0, 1) for p in (False,)])
    assert len(rewards.select_rms(idx, "LaMP-4")) == 8
    own = rewards.select_rms(idx, "LaMP-4", backbones="policy", seeds=[0], policy="gemma3-270m")
    assert set(own.backbone) == {"gemma3-270m"} and set(own.seed) == {0} and len(own) == 2
    assert len(rewards.select_rms(idx, "LaMP-5", methods=["vpl"], backbones=["smollm2-135m"])) == 2
    with pytest.raises(ValueError, match="policy"):
        rewards.select_rms(idx, "LaMP-4", backbones="policy")
    with pytest.raises(ValueError, match="backbones"):
        rewards.select_rms(idx, "LaMP-4", backbones="smollm2-135m")  # a bare name, not a list


def test_rgd_rows_of_every_rm_and_w_share_batches(lm, tmp_path):
    """RGD jobs of every (reward model, w) of a block decode as rows of shared batches; greedy jobs never join."""
    model, tok = lm
    calls = []

    def counting(model, tok, rms, messages, users, ws, n):
        calls.append(sorted({(str(r), w) for r, w in zip(rms, ws)}))
        return fake_rgd(model, tok, rms, messages, users, ws, n)

    class RM:  # two reward models on one backbone
        def __init__(self, name):
            self.name, self.backbone, self.feature_kind, self.finetuned = name, "tiny", "lm_last", False

        def __str__(self):
            return self.name

    rms = {"rmA": RM("rmA"), "rmB": RM("rmB")}
    kw = dict(icl_ks=(1,), rms=rms, ws=(0.5, 2.0), rgd_fn=counting, rgd_tag="fake", max_new_tokens=4, batch_size=3,
              user_block=8, progress=False)
    df = generation.evaluate(queries(), model, tok, "tiny", rgd_batch_size=64, **kw)
    assert len(calls) == 1 and calls[0] == [("rmA", 0.5), ("rmA", 2.0), ("rmB", 0.5), ("rmB", 2.0)]
    assert (df.system == "rgd").sum() == 4 * 2 * 2
    calls.clear()
    again = generation.evaluate(queries(), model, tok, "tiny", rgd_batch_size=4, **kw)
    assert len(calls) == 4 and again.generation.tolist() == df.generation.tolist()


def test_fingerprint_separates_raw_from_calibrated_guidance():
    from lib.rewards import BT

    rm = BT("tiny", "lm_last", 4, ["u"])
    fp = generation.rm_fingerprint(rm)
    rm.calibrated = False
    assert generation.rm_fingerprint(rm) != fp  # the same weights guiding raw must not reuse calibrated generations
