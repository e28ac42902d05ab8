"""A tiny, random Gemma 3 vision-language model built offline, for tests, the demo and benchmarks.

The folder it writes is loaded with exactly the calls used on the real Gemma-3-4B folder
(``AutoProcessor.from_pretrained`` and ``AutoModelForImageTextToText.from_pretrained``), so every
code path from loading to extraction runs without the model hub. Its tokenizer is a real BPE with
byte fallback trained on English and Arabic captions, with Gemma's special tokens and pipeline; its
weights are random but deterministic for a seed.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any, TypedDict

from sae_store.errors import SaeStoreError
from sae_store.models.adapter import check_image_geometry
from sae_store.models.config import TinyModelConfig, tiny_head_dim

__all__ = ["MEDIUM", "TINY", "ModelSize", "build_tiny_gemma3"]


class ModelSize(TypedDict):
    """Size keywords of :func:`build_tiny_gemma3` (``build_tiny_gemma3(dir, **MEDIUM)``)."""

    num_layers: int
    hidden_size: int


#: The default tiny build: ~0.22 M parameters, ~0.9 MB on disk.
TINY: ModelSize = {"num_layers": 4, "hidden_size": 64}
#: A medium build for benchmarks (~19 M parameters, ~77 MB): a residual stream wide enough for
#: realistic SAE and I/O timings.
MEDIUM: ModelSize = {"num_layers": 8, "hidden_size": 512}

# Gemma's special tokens; the first five keep Gemma's ids (pad 0, eos 1, bos 2, unk 3, mask 4).
_SPECIAL_TOKENS = (
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<mask>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
)
_BYTE_TOKENS = tuple(f"<0x{b:02X}>" for b in range(256))
_BPE_VOCAB_SIZE = 1024

_CORPUS = (
    "Describe the person in this image in detail.",
    "A man is riding a bicycle down the street.",
    "A woman in a red dress is walking her dog in the park.",
    "Two boys are playing football on the grass.",
    "A girl with long hair is reading a book.",
    "The old man sits on a bench and feeds the birds.",
    "A young woman is smiling at the camera.",
    "He is wearing a blue shirt and she is wearing a hat.",
    "A group of men and women stand near the water.",
    "A child in a yellow jacket jumps into the air.",
    "صف الشخص في هذه الصورة بالتفصيل.",
    "رجل يركب دراجة في الشارع.",
    "امرأة ترتدي فستانا أحمر تمشي مع كلبها في الحديقة.",
    "ولدان يلعبان كرة القدم على العشب.",
    "فتاة ذات شعر طويل تقرأ كتابا.",
    "يجلس الرجل العجوز على مقعد ويطعم الطيور.",
    "امرأة شابة تبتسم للكاميرا.",
    "يرتدي قميصا أزرق وهي ترتدي قبعة.",
    "مجموعة من الرجال والنساء يقفون بالقرب من الماء.",
    "طفل يرتدي سترة صفراء يقفز في الهواء.",
)

# A Gemma-3-style instruction template: bos, alternating user/model turns, an image item becomes
# <start_of_image> (which the processor expands to the image token block).
_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


def _train_tokenizer() -> Any:
    """Train a byte-fallback BPE with Gemma's pipeline and wrap it as a ``GemmaTokenizer``."""
    from tokenizers import AddedToken, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import GemmaTokenizer

    # Gemma's normalizer (spaces become "▁"), as GemmaTokenizer rebuilds it on load. Gemma's own
    # pre-tokenizer splits on " " after that normalisation, i.e. not at all; training with it would
    # learn whole sentences as single tokens. Training splits before each "▁" instead (pieces like
    # "▁the", as in Gemma's vocabulary): no merge then spans a word boundary, so applying the merges
    # to an unsplit text gives the same tokens.
    backend = Tokenizer(BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    backend.normalizer = normalizers.Replace(" ", "▁")
    backend.pre_tokenizer = pre_tokenizers.Split(pattern="▁", behavior="merged_with_next", invert=False)
    trainer = BpeTrainer(
        vocab_size=_BPE_VOCAB_SIZE, special_tokens=list(_SPECIAL_TOKENS), show_progress=False
    )
    backend.train_from_iterator(_CORPUS, trainer=trainer)
    trained = json.loads(backend.to_str())["model"]

    # Specials, then the 256 byte tokens (Gemma has them; byte fallback needs them), then the pieces.
    vocab: dict[str, int] = {}
    for token in (*_SPECIAL_TOKENS, *_BYTE_TOKENS, *sorted(trained["vocab"], key=trained["vocab"].get)):
        vocab.setdefault(token, len(vocab))
    # Pairs, not "a b" strings: GemmaTokenizer's annotation says list[str], but its BPE needs tuples.
    merges: Any = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]

    tokenizer = GemmaTokenizer(
        vocab=vocab,
        merges=merges,
        padding_side="left",
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in _SPECIAL_TOKENS[5:]], special_tokens=True
    )
    return tokenizer


def _build_config(
    tokenizer: Any,
    *,
    num_layers: int,
    hidden_size: int,
    image_size: int,
    patch_size: int,
    mm_tokens_per_image: int,
) -> Any:
    from transformers import Gemma3Config, Gemma3TextConfig, SiglipVisionConfig

    head_dim = tiny_head_dim(hidden_size)
    n_heads = hidden_size // head_dim
    text_config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=max(1, n_heads // 2),
        head_dim=head_dim,
        query_pre_attn_scalar=head_dim,
        max_position_embeddings=2048,
        sliding_window=16,
        # Gemma 3 alternates local (sliding) and global layers; every third layer is global here.
        layer_types=["full_attention" if i % 3 == 2 else "sliding_attention" for i in range(num_layers)],
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
            "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
        },
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    vision_config = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        vision_use_head=False,
    )
    return Gemma3Config(
        text_config=text_config,
        vision_config=vision_config,
        mm_tokens_per_image=mm_tokens_per_image,
        boi_token_index=tokenizer.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tokenizer.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tokenizer.convert_tokens_to_ids("<image_soft_token>"),
    )


def _set_weights(model: Any, *, seed: int, std: float) -> None:
    """Give every parameter a value that depends only on ``seed`` and the parameter's name.

    Matrices (and embeddings, convolutions) are drawn from numpy's PCG64 stream seeded with
    ``(seed, crc32(name))``, so the weights are the same bit for bit whatever the torch or
    transformers version and their init code; LayerNorm scales are 1 and every other vector
    (biases, Gemma's zero-centred RMSNorm scales) is 0. This also fills the image projection,
    which ``_init_weights`` zeroes and which would otherwise embed every image to zeros.
    """
    import numpy as np
    import torch

    layer_norm_scales = {
        id(m.weight) for m in model.modules() if isinstance(m, torch.nn.LayerNorm) and m.weight is not None
    }
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim >= 2:
                rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
                values = rng.standard_normal(size=tuple(param.shape), dtype=np.float32) * np.float32(std)
                param.copy_(torch.from_numpy(values))
            elif id(param) in layer_norm_scales:
                param.fill_(1.0)
            else:
                param.zero_()


def _validate(num_layers: int, hidden_size: int, out_dir: Path, overwrite: bool) -> None:
    TinyModelConfig(num_layers=num_layers, hidden_size=hidden_size)  # sizes, checked by their declarations
    if out_dir.exists() and not out_dir.is_dir():
        raise SaeStoreError(f"Output path {str(out_dir)!r} exists and is not a folder.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise SaeStoreError(
            f"Output folder {str(out_dir)!r} is not empty. Choose a new folder or pass --overwrite "
            "(overwrite=True from Python) to replace the model in it."
        )


def build_tiny_gemma3(
    out_dir: str | Path,
    *,
    seed: int = 0,
    num_layers: int = 4,
    hidden_size: int = 64,
    image_size: int = 32,
    patch_size: int = 4,
    mm_tokens_per_image: int = 16,
    overwrite: bool = False,
) -> Path:
    """Build a random Gemma 3 vision-language model and save it as a Hugging Face model folder.

    Parameters
    ----------
    out_dir : str or Path
        Folder to write (created if missing; must be empty unless ``overwrite``).
    seed : int
        Seed of the random weights; the same seed gives the same weights bit for bit.
    num_layers : int
        Decoder layers of the language model.
    hidden_size : int
        Width of the residual stream (intermediate size is twice that). ``**MEDIUM`` gives
        8 layers of width 512 for benchmarks.
    image_size, patch_size : int
        Side of the (square) input image and of a vision patch, in pixels.
    mm_tokens_per_image : int
        Image tokens per image: a perfect square whose root divides ``image_size // patch_size``.
    overwrite : bool
        Replace the files of a model already in ``out_dir``.

    Returns
    -------
    Path
        ``out_dir``, loadable with ``AutoProcessor.from_pretrained`` and
        ``AutoModelForImageTextToText.from_pretrained`` (or :func:`sae_store.models.loader.load_model`).

    Raises
    ------
    SaeStoreError
        If a size is invalid (see :func:`~sae_store.models.adapter.check_image_geometry`) or
        ``out_dir`` is not empty.
    """
    out = Path(out_dir)
    check_image_geometry(image_size, patch_size, mm_tokens_per_image)
    _validate(num_layers, hidden_size, out, overwrite)

    import torch
    from transformers import Gemma3ForConditionalGeneration, Gemma3Processor, GenerationConfig
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    tokenizer = _train_tokenizer()
    config = _build_config(
        tokenizer,
        num_layers=num_layers,
        hidden_size=hidden_size,
        image_size=image_size,
        patch_size=patch_size,
        mm_tokens_per_image=mm_tokens_per_image,
    )
    # The constructor's own initialisation draws from torch's global RNG; fork it so that building a
    # model leaves the caller's random stream alone. Its values are then all replaced.
    with torch.random.fork_rng(devices=[]):
        model = Gemma3ForConditionalGeneration(config)
    _set_weights(model, seed=seed, std=config.text_config.initializer_range)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")],
    )

    image_processor = Gemma3ImageProcessorPil(
        size={"height": image_size, "width": image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=_CHAT_TEMPLATE,
        image_seq_length=mm_tokens_per_image,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
