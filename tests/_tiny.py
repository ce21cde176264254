"""A tiny word-level tokenizer (with a chat template) and a 2-layer random Llama, built offline in ms.

Used by the ICL, evaluation and sharding tests so they need no packaged model.
"""
from __future__ import annotations

import torch

WORDS = ("the a cat dog sat on mat news title for is and are written by this user generate headline "
         "article paper abstract tweet paraphrase market stock falls rises today new study shows "
         "model data results we propose method learning deep neural network music film game city "
         "rain sun team wins loses election vote health food travel x y z").split()
SPECIAL = ["<pad>", "<eos>", "<unk>", "<|user|>", "<|assistant|>"]
PUNCT = list(".,:;!?\"'()-")


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIAL + PUNCT + WORDS)}
    t = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=t, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    tok.chat_template = ("{% for m in messages %}<|user|> {{ m['content'] }} {% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    return tok


def tiny_lm(tok, seed: int = 0, layers: int = 2):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    model = LlamaForCausalLM(cfg).eval()
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.requires_grad_(False)
    return model


def query(qid="q1", user="u1", task="LaMP-4", n_profile=4, rule=None):
    topics = ["stock market falls today", "new study shows deep learning results", "team wins election vote",
              "rain and sun in the city", "music film game news", "health food travel news"]
    prof = [{"id": f"{qid}-p{i}", "source": f"article {topics[i % len(topics)]}",
             "output": f"{topics[i % len(topics)].split()[0]} title"} for i in range(n_profile)]
    return {"query_id": qid, "task": task, "user": user, "user_group": "seen",
            "prompt": "generate a headline for this article : stock market rises today",
            "reference": "stock market rises", "profile": prof, "rule": rule}
