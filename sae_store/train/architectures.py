"""The SAE architectures, each registered once: its class and how SAELens names its saved folder.

Adding an architecture is one module holding its :class:`~sae_store.train.sae.SparseAutoencoder`
subclass plus one :func:`register_architecture` call (here for the built-in ones, or in your own
module); ``train --arch``, the pipeline YAML's ``sae.arch`` and the SAE loaders follow. Its
hyperparameters are fields of :class:`~sae_store.train.config.SaeConfig`. The classes are named by
``"module:Class"`` so that reading this registry (for ``--help``) does not import torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sae_store.registry import Registry

if TYPE_CHECKING:
    from sae_store.train.sae import SparseAutoencoder

SaelensName = Literal["topk", "jumprelu", "standard"]


@dataclass(frozen=True)
class Architecture:
    """One SAE architecture."""

    name: str
    """``--arch`` value and ``cfg.json``'s ``sae_store.architecture``."""
    sae_class: str | type[SparseAutoencoder]
    """The module class, or ``"module:Class"`` imported when first used."""
    saved_as: SaelensName
    """SAELens inference architecture its folders are saved as (BatchTopK is saved as JumpReLU)."""
    loads: tuple[SaelensName, ...] = ()
    """SAELens architectures of other tools' folders that load as this class."""
    ranked: bool = False
    """Keeps latents by rank (k): k may not exceed d_sae, and AuxK revives dead latents."""
    threshold: str | None = None
    """Parameter or buffer saved as the JumpReLU ``threshold`` (architectures saved as jumprelu)."""

    def load_class(self) -> type[SparseAutoencoder]:
        if isinstance(self.sae_class, str):
            module, _, name = self.sae_class.partition(":")
            cls: type[SparseAutoencoder] = getattr(importlib.import_module(module), name)
            return cls
        return self.sae_class


ARCHITECTURES: Registry[Architecture] = Registry("SAE architecture")


def register_architecture(arch: Architecture) -> Architecture:
    """Add ``arch``; refused if its name is taken (both registrations are named)."""
    return ARCHITECTURES.register(arch.name, arch)


def architecture_names() -> tuple[str, ...]:
    return ARCHITECTURES.names()


def saelens_architecture(name: str) -> Architecture | None:
    """Our architecture that loads a SAELens folder of architecture ``name`` (None if none does)."""
    return next((a for a in ARCHITECTURES if name in a.loads), None)


_ARCHS = "sae_store.train.archs"
register_architecture(Architecture("topk", f"{_ARCHS}.topk:TopKSAE", "topk", ("topk",), ranked=True))
register_architecture(
    Architecture(
        "batchtopk", f"{_ARCHS}.topk:BatchTopKSAE", "jumprelu", ranked=True, threshold="topk_threshold"
    )
)
register_architecture(Architecture("relu", f"{_ARCHS}.relu:ReluSAE", "standard", ("standard",)))
register_architecture(
    Architecture(
        "jumprelu", f"{_ARCHS}.jumprelu:JumpReLUSAE", "jumprelu", ("jumprelu",), threshold="threshold"
    )
)
register_architecture(
    Architecture(
        "matryoshka_batchtopk",
        f"{_ARCHS}.topk:MatryoshkaBatchTopKSAE",
        "jumprelu",
        ranked=True,
        threshold="topk_threshold",
    )
)
