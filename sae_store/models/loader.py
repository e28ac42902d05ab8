"""Loading a vision-language model folder: checks, identity, device and dtype, model and processor.

Everything is loaded from a local folder (``local_files_only=True``); a compute node usually has no
internet, so a model is downloaded once (``hf download google/gemma-3-4b-it --local-dir ...``) and
then always named by its folder.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sae_store.device import resolve_device
from sae_store.errors import ModelLoadError, SaeStoreError
from sae_store.models.adapter import ModelAdapter, get_adapter, supported_model_types, unsupported_message

__all__ = [
    "LoadedModel",
    "check_model_dir",
    "check_weights",
    "load_model",
    "load_processor",
    "model_identity",
    "resolve_dtype",
]

_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
_FIX = "Download the complete model folder, e.g. `hf download google/gemma-3-4b-it --local-dir DIR`."
# Config keys that say where or with which library version a model was saved, not what it is.
_VOLATILE_CONFIG_KEYS = frozenset({"_name_or_path", "transformers_version"})
_HASH_BYTES = 1 << 20

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for forward passes, with everything needed to feed and hook it."""

    model: torch.nn.Module
    """The model, in eval mode, on :attr:`device` in :attr:`dtype`."""
    processor: Any
    """Its processor (tokenizer, image processor and chat template)."""
    adapter: ModelAdapter
    """Where its decoder layers are and its sizes."""
    identity: dict[str, Any]
    """:func:`model_identity` of the folder, to record beside every artifact made with it."""
    device: torch.device
    dtype: torch.dtype


def check_model_dir(path: str | Path) -> Path:
    """Check that ``path`` is a complete local model folder and return it as a ``Path``.

    Raises
    ------
    ModelLoadError
        If the folder, ``config.json``, the processor config, the tokenizer files or the weights are
        missing; the message lists what is missing and how to get it.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelLoadError(
            f"Model folder {str(folder)!r} does not exist or is not a folder. Pass the local folder "
            f"of a downloaded model. {_FIX}"
        )
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / f).is_file() for f in _PROCESSOR_FILES):
        missing.append(" or ".join(_PROCESSOR_FILES))
    if not any((folder / f).is_file() for f in _TOKENIZER_FILES):
        missing.append(" or ".join(_TOKENIZER_FILES))
    if not (folder / "tokenizer_config.json").is_file():
        missing.append("tokenizer_config.json")
    if not _weight_files(folder):
        missing.append("weights (" + " or ".join(_WEIGHT_PATTERNS) + ")")
    if missing:
        raise ModelLoadError(
            f"Model folder {str(folder)!r} is incomplete: missing {', '.join(missing)}. {_FIX}"
        )
    return folder


def _weight_files(folder: Path) -> list[Path]:
    files = {p for pattern in _WEIGHT_PATTERNS for p in folder.glob(pattern) if p.is_file()}
    return sorted(files, key=lambda p: p.name)


def _read_config(folder: Path) -> dict[str, Any]:
    try:
        config: dict[str, Any] = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"Cannot read {str(folder / 'config.json')!r}: {e}") from e
    model_type = config.get("model_type")
    if model_type not in supported_model_types():
        raise ModelLoadError(unsupported_message(model_type))
    return config


def _load_config(folder: Path) -> Any:
    from transformers import AutoConfig

    _read_config(folder)  # refuses unsupported architectures before transformers parses them
    try:
        return AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise ModelLoadError(f"Cannot parse the config of {str(folder)!r}: {e}") from e


def _weights_sha256(folder: Path) -> str:
    # Cheap for multi-GB checkpoints: names, sizes, the index and the first and last MiB of each
    # file (a safetensors header with every tensor's dtype, shape and offset, plus data at both
    # ends). The index alone would only describe the layout, which two seeds share.
    digest = hashlib.sha256()
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        digest.update(b"index\0" + index.read_bytes())
    for file in _weight_files(folder):
        size = file.stat().st_size
        digest.update(f"{file.name}\0{size}\0".encode())
        with file.open("rb") as f:
            digest.update(f.read(_HASH_BYTES))
            if size > 2 * _HASH_BYTES:
                f.seek(size - _HASH_BYTES)
                digest.update(f.read(_HASH_BYTES))
    return digest.hexdigest()


_SAFETENSORS_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8,
}  # fmt: skip
_MAX_HEADER = 100 << 20


def _safetensors_problem(file: Path) -> str | None:
    """Why ``file`` is not a whole safetensors file (header, every tensor's size, total length), or None.

    Reads only the header: a truncated download is caught at ``init`` instead of deep in extraction.
    """
    size = file.stat().st_size
    with file.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"has {size} bytes, fewer than a safetensors header"
        n = int.from_bytes(head, "little")
        if n > min(size - 8, _MAX_HEADER):
            return f"declares a {n}-byte header but has {size} bytes"
        try:
            header = json.loads(f.read(n))
            tensors = {k: v for k, v in header.items() if k != "__metadata__"}
            end = 0
            for name, t in tensors.items():
                start, stop = (int(x) for x in t["data_offsets"])
                need = _SAFETENSORS_DTYPE_BYTES.get(t["dtype"], 0) * math.prod(int(d) for d in t["shape"])
                if t["dtype"] in _SAFETENSORS_DTYPE_BYTES and stop - start != need:
                    held = stop - start
                    return f"has tensor {name!r} ({t['dtype']} {t['shape']}) of {need} bytes in {held} bytes"
                end = max(end, stop)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            return f"has an unreadable header ({type(e).__name__}: {e})"
    if 8 + n + end != size:
        return f"should be {8 + n + end} bytes (header and tensors) but is {size}"
    return None


def check_weights(folder: Path) -> None:
    """Check that every safetensors weight file is whole and every file the index names exists.

    Raises
    ------
    ModelLoadError
        Naming the file and what is wrong with it.
    """
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError) as e:
            raise ModelLoadError(f"{str(index)!r} is unreadable ({e}). {_FIX}") from e
        missing = sorted(n for n in names if not (folder / n).is_file())
        if missing:
            raise ModelLoadError(
                f"Model folder {str(folder)!r} lacks weight files its index names: {missing}. {_FIX}"
            )
    for file in _weight_files(folder):
        if file.suffix == ".safetensors" and (problem := _safetensors_problem(file)) is not None:
            raise ModelLoadError(
                f"Weight file {str(file)!r} is damaged or incomplete: it {problem}. Download it again. {_FIX}"
            )


def model_identity(path: str | Path) -> dict[str, Any]:
    """Describe a model folder well enough to tell two checkpoints apart, cheaply and deterministically.

    Returns
    -------
    dict
        ``name_or_path`` (the resolved folder), ``model_type``, ``architecture``, ``config_sha256``
        (of the canonical config JSON, without the save path and library version),
        ``weights_sha256`` (of the weight files' names, sizes, index and first/last MiB),
        ``n_layers``, ``hidden_size``, ``mm_tokens_per_image``, ``image_token_id`` and ``vocab_size``.
    """
    folder = check_model_dir(path)
    check_weights(folder)
    raw = _read_config(folder)
    adapter = get_adapter(_load_config(folder))
    canonical = {k: v for k, v in raw.items() if k not in _VOLATILE_CONFIG_KEYS}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    vocab_size = raw.get("text_config", {}).get("vocab_size", raw.get("vocab_size"))
    return {
        "name_or_path": str(folder.resolve()),
        "model_type": adapter.model_type,
        "architecture": (raw.get("architectures") or ["unknown"])[0],
        "config_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "weights_sha256": _weights_sha256(folder),
        "n_layers": adapter.n_layers,
        "hidden_size": adapter.hidden_size,
        "mm_tokens_per_image": adapter.mm_tokens_per_image,
        "image_token_id": adapter.image_token_id,
        "vocab_size": None if vocab_size is None else int(vocab_size),
    }


def resolve_dtype(dtype: str, device: torch.device, model_type: str) -> torch.dtype:
    """Choose the compute dtype: ``"auto"`` is bfloat16 on CUDA and float32 on CPU.

    Raises
    ------
    SaeStoreError
        For an unknown name, or float16 with Gemma 3, whose activations overflow float16.
    """
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    resolved = _DTYPES.get(dtype)
    if resolved is None:
        raise SaeStoreError(f"Invalid dtype {dtype!r}: use one of {['auto', *_DTYPES]}.")
    if resolved == torch.float16 and model_type.startswith("gemma3"):
        raise SaeStoreError(
            f"dtype {dtype!r} is refused for Gemma 3: its activations overflow float16 (max 65504) and "
            "turn into inf/NaN. Use 'bfloat16' (GPU) or 'float32'."
        )
    return resolved


def load_processor(path: str | Path) -> Any:
    """Load the processor (tokenizer, image processor, chat template) of a local model folder."""
    from transformers import AutoProcessor

    folder = check_model_dir(path)
    try:
        return AutoProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelLoadError(f"Cannot load the processor of {str(folder)!r}: {e}") from e


def _check_consistency(processor: Any, config: Any, adapter: ModelAdapter, folder: Path) -> None:
    problems = []
    seq_len = getattr(processor, "image_seq_length", None)
    if seq_len != adapter.mm_tokens_per_image:
        problems.append(
            f"processor image_seq_length is {seq_len} but config mm_tokens_per_image is "
            f"{adapter.mm_tokens_per_image}"
        )
    token_id = getattr(processor.tokenizer, "image_token_id", None)
    if token_id != adapter.image_token_id:
        problems.append(
            f"tokenizer image token id is {token_id} but config image_token_id is {adapter.image_token_id}"
        )
    size = getattr(processor.image_processor, "size", None)
    height = size.get("height") if isinstance(size, dict) else getattr(size, "height", None)
    image_size = config.vision_config.image_size
    if height is not None and height != image_size:
        problems.append(f"image processor size is {height} but vision_config.image_size is {image_size}")
    if problems:
        raise ModelLoadError(
            f"Processor and model of {str(folder)!r} do not match: {'; '.join(problems)}. The folder mixes "
            "files of different checkpoints; download it again."
        )


def load_model(path: str | Path, *, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """Load a vision-language model folder for forward passes.

    Parameters
    ----------
    path : str or Path
        Local model folder (e.g. a download of ``google/gemma-3-4b-it``, or
        :func:`~sae_store.models.tiny.build_tiny_gemma3` output).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (see :func:`resolve_device`).
    dtype : str
        ``"auto"``, ``"float32"`` or ``"bfloat16"`` (see :func:`resolve_dtype`).

    Returns
    -------
    LoadedModel

    Raises
    ------
    ModelLoadError
        If the folder is incomplete, the architecture unsupported or processor and model disagree.
    SaeStoreError
        For an unusable device or dtype.
    """
    from transformers import AutoModelForImageTextToText

    folder = check_model_dir(path)
    config = _load_config(folder)
    adapter = get_adapter(config)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device, adapter.model_type)
    processor = load_processor(folder)
    _check_consistency(processor, config, adapter, folder)
    model: Any
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            folder, config=config, dtype=torch_dtype, local_files_only=True
        )
    except (OSError, ValueError, KeyError) as e:
        raise ModelLoadError(f"Cannot load the weights of {str(folder)!r}: {e}") from e
    model = model.to(torch_device).eval()
    adapter.decoder_layers(model)  # fails early if this transformers version moved the layers
    return LoadedModel(
        model=model,
        processor=processor,
        adapter=adapter,
        identity=model_identity(folder),
        device=torch_device,
        dtype=torch_dtype,
    )
