"""Models by name or by path: REGISTRY keys, local Hugging Face folders, hub ids, and names mapped by
``$PRC_MODELS`` or a profile's ``common.models`` (tiny random models saved with save_pretrained)."""

import json

import pytest
import torch

from lib.core import models, pipeline
from tests._tiny import tiny_lm, tiny_tokenizer


@pytest.fixture(autouse=True)
def _no_mappings(monkeypatch):
    monkeypatch.delenv(models.ENV_VAR, raising=False)
    monkeypatch.setattr(models, "_REGISTERED", {})


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm")
    tok = tiny_tokenizer()
    tiny_lm(tok).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _seq_cls(tok, out):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(1)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, num_labels=1, pad_token_id=tok.pad_token_id)
    LlamaForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def cls_dir(tmp_path_factory):
    return _seq_cls(tiny_tokenizer(), tmp_path_factory.mktemp("cls"))


def test_a_folder_is_a_model_with_kind_and_size_from_its_config(lm_dir):
    s = models.spec(str(lm_dir))
    assert (s.kind, s.source, s.path) == ("causal_lm", "local", str(lm_dir.resolve()))
    want = sum(p.numel() for p in tiny_lm(tiny_tokenizer()).parameters()) / 1e6
    assert s.params_m == pytest.approx(want) and s.params_m > 0
    assert s.chat_template  # the tiny tokenizer carries one
    model, tok = models.load_causal_lm(str(lm_dir), device="cpu")
    ids = tok(["the cat sat"], return_tensors="pt")["input_ids"]
    ref = tiny_lm(tiny_tokenizer())
    assert torch.allclose(model(ids).logits, ref(ids).logits, atol=1e-5)


def test_sequence_classifier_and_encoder_kinds(cls_dir, tmp_path):
    from transformers import BertConfig, BertModel

    assert models.spec(str(cls_dir)).kind == "seq_cls"
    with pytest.raises(ValueError, match="not a causal LM"):
        models.load_causal_lm(str(cls_dir), device="cpu")
    model, _ = models.load_sequence_classifier(str(cls_dir), device="cpu")
    assert model.config.num_labels == 1
    enc = tmp_path / "enc"
    BertModel(BertConfig(vocab_size=len(tiny_tokenizer()), hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64)).save_pretrained(enc)
    tiny_tokenizer().save_pretrained(enc)
    assert models.spec(str(enc)).kind == "encoder"
    e, tok = models.load_encoder(str(enc), device="cpu")
    assert e(**tok(["the cat"], return_tensors="pt")).last_hidden_state.shape[-1] == 32


def test_env_mapping_names_folders_and_overrides_the_registry(monkeypatch, lm_dir, cls_dir):
    monkeypatch.setenv(models.ENV_VAR, f" my-lm = {lm_dir} ,my-rm={cls_dir},smollm2-135m={lm_dir}")
    assert models.spec("my-lm").path == str(lm_dir.resolve()) and models.spec("my-lm").name == "my-lm"
    assert models.spec("my-rm").kind == "seq_cls"
    assert models.spec("smollm2-135m").source == "local"  # a registry name can point at a local copy
    monkeypatch.setenv(models.ENV_VAR, "")
    assert models.spec("smollm2-135m").source == "gguf-package"


@pytest.mark.parametrize("text, match", [
    ("a", "entry 1 'a' is not name=folder-or-hub-id"),
    ("a=", "entry 1 'a=' is not name="),
    ("=b", "entry 1"),
    ("a=/x,,c=/y", "entry 2 is empty"),
    ("a=/x,a=/y", "'a' is mapped twice"),
    ("a b=/x", "without spaces"),
])
def test_env_mapping_is_parsed_strictly(monkeypatch, text, match):
    monkeypatch.setenv(models.ENV_VAR, text)
    with pytest.raises(ValueError, match=match) as e:
        models.spec("smollm2-135m")
    assert "PRC_MODELS" in str(e.value)


def test_register_maps_names_and_the_environment_wins(monkeypatch, lm_dir, cls_dir):
    models.register({"mine": str(lm_dir)})
    assert models.spec("mine").kind == "causal_lm"
    monkeypatch.setenv(models.ENV_VAR, f"mine={cls_dir}")
    assert models.spec("mine").kind == "seq_cls"
    with pytest.raises(ValueError, match="maps to 3"):
        models.register({"bad": 3})
    with pytest.raises(ValueError, match="must be a mapping"):
        models.register(["x"])


def test_unknown_names_say_what_was_tried_and_how_to_map(tmp_path, monkeypatch):
    with pytest.raises(models.ModelUnavailableError, match="not in the registry .*smollm2-135m.*PRC_MODELS='gpt5="):
        models.spec("gpt5")
    monkeypatch.setenv(models.ENV_VAR, f"gone={tmp_path / 'nope'},odd=no slash here")
    with pytest.raises(models.ModelUnavailableError, match=r"'gone' \(mapped to .* by \$PRC_MODELS\).*does not exist"):
        models.spec("gone")
    with pytest.raises(models.ModelUnavailableError, match="neither a folder with config.json nor a hub id"):
        models.spec("odd")
    with pytest.raises(models.ModelUnavailableError, match="has no config.json"):
        models.spec(str(tmp_path))


@pytest.mark.parametrize("config, match", [({"model_type": "llama"}, "no 'architectures' entry"),
                                           ({"architectures": ["T5ForConditionalGeneration"]}, "none of")])
def test_a_config_of_unknown_kind_is_an_error_naming_the_file(tmp_path, config, match):
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(models.ModelUnavailableError, match=match) as e:
        models.spec(str(tmp_path))
    assert str(tmp_path / "config.json") in str(e.value)


def test_hub_id_offline_without_cache_explains(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(models.ModelUnavailableError, match="hf download someorg/some-rm"):
        models.spec("someorg/some-rm")


def test_profile_common_models_are_registered(tmp_path, lm_dir):
    (tmp_path / "mine.yaml").write_text(f"common: {{profile: mine, models: {{prof-lm: {lm_dir}}}}}\n")
    pipeline.parameters_for("01_build_pref_lamp", "mine", configs_dir=tmp_path)
    assert models.spec("prof-lm").path == str(lm_dir.resolve())
    (tmp_path / "mine.yaml").write_text("common: {profile: mine, models: [a, b]}\n")
    with pytest.raises(ValueError, match="mine.yaml: common.models: the model mapping must be a mapping"):
        pipeline.parameters_for("01_build_pref_lamp", "mine", configs_dir=tmp_path)


def test_auto_dtype_on_cuda_follows_bf16_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert models.auto_device_dtype() == (torch.device("cuda"), torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert models.auto_device_dtype() == (torch.device("cuda"), torch.float16)
    assert models.auto_device_dtype("cuda:0")[1] == torch.float16
    assert models.auto_device_dtype("cpu")[1] == torch.float32
    assert models.auto_device_dtype(None, "bf16")[1] == torch.bfloat16  # an explicit dtype wins
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        models.auto_device_dtype("cpu", "fp8")
