"""Tiny randomly initialised checkpoints of the paper profile's model families, for ``make test-paper-dry``.

configs/paper-dry.yaml maps the paper's model names to these folders (``common.models``), so notebooks 01-06 run
the paper profile's own code paths on a CPU in minutes:

* ``qwen2.5-0.5b``, ``qwen2.5-1.5b``, ``qwen2.5-3b``, ``qwen2.5-7b``: ``Qwen2ForCausalLM`` (the Qwen2.5 architecture:
  grouped-query attention, q/k/v biases, RoPE, RMSNorm; input and output embeddings tied below 7B and untied at 7B,
  as in the real family) at four tiny sizes (:data:`QWEN`), so the size axis of the plots has four points. All four
  share one tokenizer, as Qwen2.5's sizes do: reward models on 0.5B hidden states then guide 1.5B-7B on RGD path b
  (another model, the same tokenizer), as they would on a GPU.
* ``minilm-l6``: ``BertModel`` (the architecture of all-MiniLM-L6-v2) with 2 tiny layers and the packaged MiniLM's
  own WordPiece tokenizer (another tokenizer than the policies': RGD path c).

The tokenizer (decided here; the hub is not reachable): a byte-level BPE trained with the ``tokenizers`` library on
a fixed text (:func:`training_text`), saved as a ``Qwen2Tokenizer`` with Qwen2.5's special tokens (``<|endoftext|>``
the pad token, ``<|im_start|>``, ``<|im_end|>`` the end of a turn and the eos token) and Qwen2.5-Instruct's ChatML
chat template (its default system message included), so prompts are formatted as the real models format them.
Byte-level like Qwen's, it encodes any text (accents, emoji) without unknown tokens. SmolLM2's tokenizer (a
stand-in that exists here) was not chosen: it would tie the dry run to dequantising the SmolLM2 GGUF package, and
its 49k vocabulary would make the tiny models mostly embedding tables.

Weights are random (``torch.manual_seed``), with ``initializer_range`` 0.2 instead of 0.02 so that the next-token
distributions are not nearly uniform (a near tie at every step makes greedy choices hinge on float rounding).
Nothing the models write means anything: the dry run checks that every path runs and what it writes is
well formed, not any number.

Written once: a folder whose ``recipe.json`` equals the current recipe and that passes
:func:`lib.core.models.folder_damage` is kept; otherwise it is (re)written atomically.

    python tests/tiny_checkpoints.py [OUT]       # default: <repo>/.cache/models/paper-dry (git-ignored)
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib import REPO_ROOT

DEFAULT_OUT = REPO_ROOT / ".cache" / "models" / "paper-dry"
VOCAB = 1024  # BPE vocabulary (specials added on top)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen2.5-Instruct's chat template for plain messages (its tool-calling branches left out)
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
QWEN = {  # name: (hidden, intermediate, layers, tied embeddings); 4 heads, 2 key-value heads (GQA) each
    "qwen2.5-0.5b": (32, 64, 1, True),
    "qwen2.5-1.5b": (48, 96, 2, True),
    "qwen2.5-3b": (64, 128, 2, True),
    "qwen2.5-7b": (96, 192, 3, False),
}
MINILM = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
RECIPE_VERSION = 1


def training_text() -> list[str]:
    """A fixed English text for the BPE: common words, and the words of the test fixtures (LaMP layout, preference
    sets), so that frequent words become single tokens as in a real vocabulary."""
    from lib.data import synthetic_scenes

    words = ("the of and to a in is you that it he was for on are as with his they at be this have from or one "
             "had by word but not what all were we when your can said there use an each which she do how their if "
             "will up other about out many then them these so some her would make like him into time has look two "
             "more write go see number no way could people my than first water been call who oil its now find long "
             "down day did get come made may part new news city council river festival market school storm bridge "
             "museum team election budget vaccine robot garden league concert harbour train forest library startup "
             "drought satellite protest recipe bakery volcano coral unveils delays celebrates rejects expands warns "
             "rebuilds wins title article abstract paper tweet paraphrase generate headline following summary post "
             "reddit advice friend work money relationship help question answer thanks really think know feel").split()
    scenes = [" ".join(str(v) for v in s.values() if isinstance(v, str)) for s in synthetic_scenes.SCENES]
    lines = [" ".join(words[i:] + words[:i]) for i in range(0, len(words), 7)]
    return lines * 4 + scenes * 4 + [w.capitalize() + "." for w in words]


def write_tokenizer(out: Path):
    """The shared Qwen-style tokenizer (module docstring), saved into ``out``; returns it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(training_text(), trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  additional_special_tokens=["<|im_start|>"], model_max_length=32768,
                                  clean_up_tokenization_spaces=False)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(out)
    cfg_file = out / "tokenizer_config.json"  # load as Qwen2's tokenizer class, as the real checkpoints do
    cfg = json.loads(cfg_file.read_text())
    cfg["tokenizer_class"] = "Qwen2Tokenizer"
    cfg_file.write_text(json.dumps(cfg, indent=1) + "\n")
    return tok


def write_qwen(out: Path, name: str, tok_dir: Path, seed: int) -> None:
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    hidden, inter, layers, tied = QWEN[name]
    tok_files = [f for f in tok_dir.iterdir() if f.is_file()]
    vocab = len(json.loads((tok_dir / "tokenizer.json").read_text())["model"]["vocab"])
    ids = {t: i for t, i in json.loads((tok_dir / "tokenizer.json").read_text())["model"]["vocab"].items()
           if t in SPECIALS}
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768,
                      rope_parameters={"rope_type": "default", "rope_theta": 1e6}, rms_norm_eps=1e-6,
                      tie_word_embeddings=tied, use_sliding_window=False, initializer_range=0.2,
                      bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                      pad_token_id=ids["<|endoftext|>"], architectures=["Qwen2ForCausalLM"])
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg).eval()
    # Qwen2.5-Instruct's generation config: a turn ends at <|im_end|> or <|endoftext|>; greedy here
    model.generation_config = GenerationConfig(eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
                                               pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"])
    model.save_pretrained(out)
    for f in tok_files:
        shutil.copy2(f, out / f.name)


def write_minilm(out: Path, seed: int) -> None:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from lib.core import models

    packaged = models._package_dir(models.REGISTRY["minilm-l6"]) / models.REGISTRY["minilm-l6"].filename
    tok = AutoTokenizer.from_pretrained(packaged)
    cfg = BertConfig(vocab_size=tok.vocab_size, max_position_embeddings=512, architectures=["BertModel"], **MINILM)
    torch.manual_seed(seed)
    BertModel(cfg).eval().save_pretrained(out)
    tok.save_pretrained(out)


def recipe() -> dict:
    return {"version": RECIPE_VERSION, "vocab": VOCAB, "qwen": QWEN, "minilm": MINILM}


def write_all(out: Path = DEFAULT_OUT, force: bool = False) -> dict[str, Path]:
    """Write (or keep) every tiny checkpoint under ``out``; returns ``{registry name: folder}``."""
    from lib.core import models
    from lib.core.io import atomic_dir

    out = Path(out)
    want = json.dumps(recipe(), sort_keys=True)
    names = [*QWEN, "minilm-l6"]
    folders = {n: out / n for n in names}
    if not force and all((f / "recipe.json").exists() and (f / "recipe.json").read_text() == want
                         and models.folder_damage(f) is None for f in folders.values()):
        return folders
    tok_dir = out / "_tokenizer"
    with atomic_dir(tok_dir) as tmp:
        write_tokenizer(tmp)
    for i, name in enumerate(names):
        with atomic_dir(folders[name]) as tmp:
            write_minilm(tmp, seed=i) if name == "minilm-l6" else write_qwen(tmp, name, tok_dir, seed=i)
            (tmp / "recipe.json").write_text(want)
            models.mark_complete(tmp)
    shutil.rmtree(tok_dir)
    return folders


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", default=str(DEFAULT_OUT))
    ap.add_argument("--force", action="store_true", help="rewrite even when the folders are up to date")
    a = ap.parse_args(argv)
    for name, folder in write_all(Path(a.out), a.force).items():
        print(f"[tiny-checkpoints] {name}: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
