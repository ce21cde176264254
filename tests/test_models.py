"""Model registry: packaged models load offline; hub models fail with a message that says what to do."""

import pytest
import torch

from lib.core import models
from lib.decoding import greedy


def test_auto_device_dtype_cpu_and_override():
    dev, dt = models.auto_device_dtype("cpu")
    assert dev.type == "cpu" and dt == torch.float32
    assert models.auto_device_dtype("cpu", "bf16")[1] == torch.bfloat16


def test_unknown_model_lists_known():
    with pytest.raises(models.ModelUnavailableError, match="smollm2-135m"):
        models.spec("gpt-5")


def test_hub_model_offline_without_cache_explains(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(models.ModelUnavailableError, match="hf download Qwen/Qwen2.5-0.5B-Instruct"):
        models.load_causal_lm("qwen2.5-0.5b")


def test_packaged_policy_loads_from_the_cached_folder():
    folder = models.local_folder("smollm2-135m")
    assert (folder / "config.json").exists() and not list(folder.parent.glob(".smollm2-135m.*"))
    assert models.folder_damage(folder) is None
    model, tok = models.load_causal_lm("smollm2-135m", device="cpu")
    assert model.config.hidden_size == 576 and models.has_chat_template(tok)
    out = greedy.greedy_generate(model, tok, ["Say hello.", "Name a colour."], max_new_tokens=6, batch_size=2)
    solo = greedy.greedy_generate(model, tok, ["Name a colour."], max_new_tokens=6, batch_size=1)
    assert len(out) == 2 and out[1] == solo[0]  # left padding does not change a row
    assert models.prompt_text(tok, "hi").endswith("<|im_start|>assistant\n")


def test_encoder_loads():
    enc, tok = models.load_encoder("minilm-l6", device="cpu")
    x = enc(**tok(["hello world"], return_tensors="pt")).last_hidden_state
    assert x.shape[-1] == 384


def _base_tokenizer(adds_bos: bool):
    """A base-model tokenizer (no chat template) that does or does not prepend BOS itself."""
    from tokenizers import Tokenizer, pre_tokenizers, processors
    from tokenizers import models as tm
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "hello": 4, "world": 5, "x": 6}
    t = Tokenizer(tm.WordLevel(vocab, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    if adds_bos:
        t.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=t, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                                   unk_token="<unk>")


def test_base_model_prompt_starts_with_bos_exactly_once():
    # Gemma 3 (base, no chat template) degenerates without <bos>; prompts are tokenised without
    # special tokens, so prompt_text must carry it, and only for tokenizers that would add it.
    ids = models.prompt_ids(_base_tokenizer(adds_bos=True), "hello world")
    assert ids[0] == 2 and ids.count(2) == 1 and ids[1:3] == [4, 5]
    assert models.prompt_ids(_base_tokenizer(adds_bos=False), "hello world")[0] == 4


def test_pad_batch_left_and_right_by_hand():
    ids, mask = models.pad_batch([[5, 6, 7], [8]], pad_id=0, side="left")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, mask = models.pad_batch([[5, 6, 7], [8]], pad_id=9, side="right")
    assert ids.tolist() == [[5, 6, 7], [8, 9, 9]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert ids.dtype == mask.dtype == torch.long
    with pytest.raises(ValueError, match="sequence 1 has no tokens"):
        models.pad_batch([[1], []], 0)
    with pytest.raises(ValueError, match="side must be"):
        models.pad_batch([[1]], 0, side="middle")


def test_decoder_of_is_the_body_under_lm_head():
    from _tiny import tiny_lm, tiny_tokenizer

    lm = tiny_lm(tiny_tokenizer())
    assert models.decoder_of(lm) is lm.model
    ids = torch.tensor([[5, 6, 7]])
    h = models.decoder_of(lm)(input_ids=ids).last_hidden_state
    torch.testing.assert_close(lm.lm_head(h), lm(input_ids=ids).logits)


def _fake_dequantise(calls):
    def dequantise(s, out):
        from lib.core.io import atomic_dir

        calls.append(s.name)
        with atomic_dir(out) as tmp:
            (tmp / "config.json").write_text("{}")
            (tmp / "model.safetensors").write_bytes(b"\0" * 1000)
            models.mark_complete(tmp)
    return dequantise


def test_damaged_model_folder_is_re_created_with_a_warning(monkeypatch, tmp_path):
    """A truncated dequantised folder used to count as complete (it had a config.json) and then failed with
    safetensors' "incomplete metadata" and no path."""
    monkeypatch.setenv("PRC_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(models, "_dequantise", _fake_dequantise(calls))
    folder = models.local_folder("smollm2-135m")
    assert calls == ["smollm2-135m"] and models.folder_damage(folder) is None
    assert models.local_folder("smollm2-135m") == folder and len(calls) == 1  # a sound folder is reused
    with open(folder / "model.safetensors", "r+b") as f:
        f.truncate(10)
    assert "model.safetensors has 10 bytes, 1000 when written" in models.folder_damage(folder)
    with pytest.warns(UserWarning, match=r"model\.safetensors has 10 bytes.*re-creating it from the package"):
        models.local_folder("smollm2-135m")
    assert len(calls) == 2 and (folder / "model.safetensors").stat().st_size == 1000
    (folder / models.COMPLETE).unlink()  # a folder of an older release, or an interrupted copy
    with pytest.warns(UserWarning, match="no readable .complete.json"):
        models.local_folder("smollm2-135m")
    assert len(calls) == 3


def test_unloadable_model_folder_names_itself(monkeypatch, tmp_path):
    monkeypatch.setenv("PRC_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "_dequantise", _fake_dequantise([]))
    with pytest.raises(models.ModelUnavailableError, match=rf"{tmp_path}/models/smollm2-135m could not be loaded.*"
                                                           "delete it and run again"):
        models.load_causal_lm("smollm2-135m", device="cpu")
