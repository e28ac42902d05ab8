"""Editing the residual stream inside the running model with SAE features.

An edit changes only the SAE's feature terms and keeps its reconstruction error: with
``x = x_hat + err`` and ``x_hat = sum_i f_i(x) d_i + b_dec``, changing feature ``i`` from ``f_i`` to
``g_i`` gives ``x' = x + sum_{i in F} (g_i - f_i) d_i``:

* ablate: ``g_i = 0``, so ``x' = x - sum f_i d_i``;
* amplify: ``g_i = alpha f_i``, so ``x' = x + (alpha - 1) sum f_i d_i``;
* neutralise: ``g_i = m_i``, the feature's mean over male and female samples.

The edit is applied by a forward hook on one decoder layer (:func:`edit_layer`); the layers after it,
the final norm and the LM head see the edited stream, so every downstream effect goes through the
model. Hooks are registered with ``prepend=True`` and always removed, even when the body raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, get_args

import torch
from torch import nn

from sae_store.errors import ConfigError, SaeStoreError
from sae_store.intervene.config import EditMode, Positions, check_alpha
from sae_store.models.adapter import hidden_from_output, replace_hidden

__all__ = [
    "FeatureEdit",
    "HookRecord",
    "PositionMask",
    "SAELike",
    "check_sae",
    "edit_layer",
    "edit_residual",
    "layer_hook",
]


class SAELike(Protocol):
    """What an intervention needs from a sparse autoencoder (paper notation)."""

    @property
    def W_dec(self) -> torch.Tensor:
        """Decoder directions, ``[d_sae, d_in]``."""
        ...

    @property
    def b_dec(self) -> torch.Tensor:
        """Decoder bias, ``[d_in]``."""
        ...

    @property
    def d_in(self) -> int: ...

    @property
    def d_sae(self) -> int: ...

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations ``[..., d_sae]`` of inputs ``[..., d_in]``."""
        ...

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``[..., d_in]`` of feature activations ``[..., d_sae]``."""
        ...


@dataclass(frozen=True)
class FeatureEdit:
    """Which SAE features to change, how, and at which token positions."""

    mode: EditMode
    """``"ablate"`` (set to 0), ``"amplify"`` (multiply by :attr:`alpha`) or ``"neutralise"`` (set to
    :attr:`targets`)."""
    features: tuple[int, ...]
    """Feature indices F (distinct, >= 0); empty leaves the stream untouched."""
    alpha: float = 2.0
    """Amplification factor (``"amplify"`` only); must be > 0. 1 changes nothing."""
    positions: Positions = "all"
    """Token positions edited: ``"image"`` (image soft tokens), ``"text"`` (prompt text and every
    generated or teacher-forced caption token) or ``"all"`` (every non-padding token)."""
    targets: tuple[float, ...] | None = None
    """Values the features are set to (``"neutralise"`` only), one per feature."""

    def __post_init__(self) -> None:
        if self.mode not in get_args(EditMode):
            raise ConfigError(f"mode must be one of {list(get_args(EditMode))}, got {self.mode!r}")
        if self.positions not in get_args(Positions):
            raise ConfigError(f"positions must be one of {list(get_args(Positions))}, got {self.positions!r}")
        bad = [i for i in self.features if not isinstance(i, int) or i < 0]
        if bad:
            raise ConfigError(f"features must be non-negative integers, got {bad!r}")
        if len(set(self.features)) != len(self.features):
            raise ConfigError(f"features must be distinct, got {list(self.features)!r}")
        check_alpha(self.mode, self.alpha)
        if self.mode == "neutralise":
            if self.targets is None or len(self.targets) != len(self.features):
                n = None if self.targets is None else len(self.targets)
                raise ConfigError(
                    f"mode 'neutralise' needs one target value per feature: {len(self.features)} "
                    f"features, {n} targets"
                )
        elif self.targets is not None:
            raise ConfigError(f"targets are only used by mode 'neutralise', not {self.mode!r}")


def _recorded_layer(sae: Any) -> int | None:
    # SAE configs name the layer differently (ours: cfg.layer; SAELens: hook_layer); None if absent.
    for holder in (sae, getattr(sae, "cfg", None), getattr(sae, "config", None)):
        for name in ("layer", "hook_layer"):
            value = getattr(holder, name, None) if holder is not None else None
            if isinstance(value, int):
                return value
    return None


def check_sae(
    sae: SAELike, *, layer: int, d_in: int, edit: FeatureEdit | None = None, sae_layer: int | None = None
) -> None:
    """Refuse an SAE that does not fit ``layer`` of a model with residual width ``d_in``.

    ``sae_layer`` is the layer the SAE was trained on (e.g. ``hook_layer`` of its ``cfg.json``);
    by default it is read from the SAE object (``layer`` or ``cfg.layer``/``config.layer``), and not
    checked if the SAE records none.

    Raises
    ------
    SaeStoreError
        If the SAE's ``d_in`` differs from the model's, it records another layer than ``layer``, or an
        edited feature index is ``>= d_sae``.
    """
    if sae.d_in != d_in:
        raise SaeStoreError(
            f"the SAE reads vectors of d_in={sae.d_in}, but the model's residual stream has width {d_in}; "
            "use an SAE trained on this model's activations"
        )
    recorded = sae_layer if sae_layer is not None else _recorded_layer(sae)
    if recorded is not None and recorded != layer:
        raise SaeStoreError(
            f"the SAE was trained on layer {recorded}, not layer {layer}; load saes/layer_{layer}/ for it"
        )
    if edit is not None:
        bad = [i for i in edit.features if i >= sae.d_sae]
        if bad:
            raise SaeStoreError(
                f"feature indices {bad} are out of range: the SAE has d_sae={sae.d_sae} features "
                f"(0..{sae.d_sae - 1})"
            )


def edit_residual(
    x: torch.Tensor, sae: SAELike, edit: FeatureEdit, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Apply ``edit`` to residual vectors ``x`` ``[..., d_in]``, keeping the SAE's reconstruction error.

    Parameters
    ----------
    x : torch.Tensor
        Residual stream, any leading shape; computed in the SAE's dtype, returned in ``x``'s.
    sae : SAELike
        The SAE of this layer.
    edit : FeatureEdit
        What to change.
    mask : torch.Tensor, optional
        Bool, ``x.shape[:-1]``: positions to edit (others are returned bit for bit).

    Returns
    -------
    torch.Tensor
        ``x + sum_{i in F} (g_i - f_i(x)) d_i`` where edited, ``x`` elsewhere.
    """
    if not edit.features or (mask is not None and not bool(mask.any())):
        return x
    W = sae.W_dec
    idx = torch.tensor(edit.features, device=W.device)
    f = sae.encode(x.to(device=W.device, dtype=W.dtype))[..., idx]
    if edit.mode == "ablate":
        new = torch.zeros_like(f)
    elif edit.mode == "amplify":
        new = edit.alpha * f
    else:
        assert edit.targets is not None  # checked by FeatureEdit
        new = torch.tensor(edit.targets, dtype=f.dtype, device=f.device).expand_as(f)
    delta = ((new - f) @ W[idx]).to(device=x.device, dtype=x.dtype)
    if mask is None:
        return x + delta
    return torch.where(mask.unsqueeze(-1), x + delta, x)


@dataclass
class PositionMask:
    """Positions to edit, for the prompt's shape and for the tokens generated after it.

    ``generate`` runs the prompt once (``[B, T, d]``) and then one token per step (``[B, 1, d]``,
    with a KV cache) or the whole growing sequence (without one); :meth:`for_hidden` gives the mask
    for each of these shapes.
    """

    prompt: torch.Tensor
    """Bool ``[B, T]`` for the prompt (or the whole teacher-forced sequence)."""
    new_tokens: bool
    """Whether tokens beyond the prompt (generated, all text) are edited."""

    def for_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """The mask ``[B, T']`` for a layer output ``[B, T', d]``."""
        B, T = self.prompt.shape
        b, t = hidden.shape[:2]
        if b != B:
            raise SaeStoreError(f"the hooked layer saw a batch of {b} rows, the mask was built for {B}")
        prompt = self.prompt.to(hidden.device)
        if t == T:
            return prompt
        if t == 1:  # a decode step with a KV cache
            return torch.full((B, 1), self.new_tokens, dtype=torch.bool, device=hidden.device)
        if t > T:  # a decode step without a cache: the prompt, then the generated tokens
            extra = torch.full((B, t - T), self.new_tokens, dtype=torch.bool, device=hidden.device)
            return torch.cat([prompt, extra], dim=1)
        raise SaeStoreError(f"the hooked layer saw {t} positions; the mask was built for {T} (or 1 per step)")


@dataclass
class HookRecord:
    """What a hook saw: the shape of every layer output it handled, in call order."""

    shapes: list[tuple[int, ...]] = field(default_factory=list)


@contextmanager
def layer_hook(module: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor | None]) -> Iterator[HookRecord]:
    """Run ``fn`` on every output of ``module`` while the block runs; always remove the hook.

    ``fn`` receives the hidden states ``[B, T, d]`` (from a Tensor or a tuple output) and returns a
    replacement, or None to leave the output as it is (e.g. to only record it). The hook is
    prepended, so other hooks and ``output_hidden_states`` see the replaced value.

    Yields
    ------
    HookRecord
        Filled with the shapes seen while the block runs.
    """
    record = HookRecord()

    def hook(_module: nn.Module, _args: Any, output: Any) -> Any:
        hidden = hidden_from_output(output)
        record.shapes.append(tuple(hidden.shape))
        new = fn(hidden)
        return None if new is None else replace_hidden(output, new)

    handle = module.register_forward_hook(hook, prepend=True)
    try:
        yield record
    finally:
        handle.remove()


@contextmanager
def edit_layer(
    layer_module: nn.Module, sae: SAELike, edit: FeatureEdit, mask: PositionMask | None = None
) -> Iterator[HookRecord]:
    """Edit the output of one decoder layer with ``edit`` while the block runs.

    Parameters
    ----------
    layer_module : torch.nn.Module
        The decoder layer (``adapter.decoder_layers(model)[layer]``); check the SAE against it first
        with :func:`check_sae`.
    sae : SAELike
        The SAE trained on that layer's output.
    edit : FeatureEdit
        Features, mode and positions.
    mask : PositionMask, optional
        Positions to edit (from :func:`~sae_store.intervene.batches.position_mask`); None edits all.

    Yields
    ------
    HookRecord
        The shapes the hook handled (prefill ``[B, T, d]``, then ``[B, 1, d]`` per decode step).
    """

    def fn(hidden: torch.Tensor) -> torch.Tensor:
        return edit_residual(hidden, sae, edit, None if mask is None else mask.for_hidden(hidden))

    with layer_hook(layer_module, fn) as record:
        yield record
