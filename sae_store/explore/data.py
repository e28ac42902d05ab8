"""What the explorer reads from a store, lazily: one ``ExploreData`` per opened snapshot of the store.

Everything large stays on disk until a page asks for it: a feature page reads one feature's
column of the ``features`` group and the residual streams of a few top samples; a sample page reads
one sample's row. The per-sample metadata (ids, genders, image paths, captions) is small and read
once. Results are opened lazily through xarray by variable name (never by file path), so a change
in how the store lays out its files does not reach this module.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from sae_store.errors import SaeStoreError
from sae_store.explore.saes import SaeCache
from sae_store.models import TokenDecoder, token_decoder
from sae_store.store import ActivationStore, open_store
from sae_store.store import schema as S
from sae_store.store.results import (
    Labels,
    has_group,
    has_result,
    intervention_summaries,
    read_group,
    read_labels,
    sibling_folder,
    strings,
)
from sae_store.train import SaeRecord, encoded_saes, sae_records


class FeatureNotFoundError(SaeStoreError):
    """A feature id or layer the store does not hold."""


class SampleNotFoundError(SaeStoreError):
    """A sample id the store does not hold."""


@dataclass(frozen=True)
class SampleTokens:
    """One sample's tokens in one language: roles, ids, and optionally a feature's activation at each."""

    roles: np.ndarray
    ids: np.ndarray
    acts: np.ndarray | None


class ExploreData:
    """A store opened for browsing, with its SAE folder and results folder.

    Parameters
    ----------
    store_path
        The activation store.
    saes_dir
        Folder of per-layer SAEs in any layout ``encode`` accepts, or a ``{L}`` pattern; default
        ``saes/`` beside the store if it exists. Layers it lacks use the SAE ``encode`` recorded.
    results_dir
        Folder of the analyses' JSON results; default ``results/`` beside the store if it exists.
    model_dir
        The model folder whose tokenizer decodes token ids; default the one the store records.
    """

    def __init__(
        self,
        store_path: str | Path,
        *,
        saes_dir: str | Path | None = None,
        results_dir: str | Path | None = None,
        model_dir: str | Path | None = None,
    ) -> None:
        self.store: ActivationStore = open_store(store_path)
        self.model_dir = model_dir or self.store.model_folder
        self.saes_dir = _folder(saes_dir, self.store, "saes", "--saes")
        self.results_dir = _folder(results_dir, self.store, "results", "--results")
        self.n_samples = self.store.layout.n_samples
        self.labels: Labels = read_labels(self.store)
        self.saes = SaeCache({layer: rec.path for layer, rec in self.sae_records.items()})
        self._sample_pos = {s: i for i, s in enumerate(self.labels.sample)}
        self._frequency: dict[tuple[int, str], np.ndarray] = {}
        self._role_frequency: dict[tuple[int, str], dict[str, np.ndarray]] = {}

    # ------------------------------------------------------------------ layout
    @property
    def layers(self) -> tuple[int, ...]:
        return self.store.layout.layers

    @property
    def languages(self) -> tuple[str, ...]:
        return self.store.layout.languages

    @property
    def image_tokens(self) -> int:
        return int(self.store.attrs.get("image_tokens", 0))

    @cached_property
    def images_dir(self) -> Path | None:
        folder = self.store.attrs.get("images_dir")
        return Path(folder) if folder else None

    @cached_property
    def decode_token(self) -> TokenDecoder | None:
        """Token id -> text with the store's model tokenizer; None when the model folder is not here."""
        return token_decoder(self.model_dir)

    def warm(self) -> None:
        """Open the groups and load the tokenizer now, so that the first page is as quick as the rest."""
        _ = self.features, self._analyses, self.decode_token, self.sae_records, self.explanations

    def stored_n_samples(self) -> int:
        """How many samples the store on disk holds now (grows when samples are appended)."""
        try:
            return open_store(self.store.path).layout.n_samples
        except SaeStoreError:  # an append rewriting the attributes: keep what is open
            return self.n_samples

    # ------------------------------------------------------------------ groups
    @cached_property
    def root(self) -> xr.Dataset:
        return self.store.dataset()

    @cached_property
    def features(self) -> xr.Dataset | None:
        """The ``features`` group (lazy), or None before ``sae-store encode``."""
        return read_group(self.store, S.FEATURES) if has_group(self.store, S.FEATURES) else None

    @cached_property
    def d_sae(self) -> int | None:
        return None if self.features is None else int(self.features.sizes[S.FEATURE])

    def analysis(self, name: str) -> xr.Dataset | None:
        """``analysis/<name>`` opened lazily (JSON attributes parsed), or None if not written."""
        return self._analyses.get(name)

    @cached_property
    def _analyses(self) -> dict[str, xr.Dataset]:
        names = ("bias", "crosslingual", "crosslayer", S.LOGIT_LENS)
        paths = {name: f"{S.ANALYSIS}/{name}" for name in names}
        return {
            name: read_group(self.store, path) for name, path in paths.items() if has_result(self.store, path)
        }

    @cached_property
    def explanations(self) -> xr.Dataset | None:
        """The ``explanations`` group (small; loaded), or None before ``sae-store explain``."""
        return (
            read_group(self.store, S.EXPLANATIONS, load=True)
            if has_group(self.store, S.EXPLANATIONS)
            else None
        )

    @cached_property
    def generation(self) -> xr.Dataset | None:
        return read_group(self.store, S.GENERATION) if has_group(self.store, S.GENERATION) else None

    @cached_property
    def sae_records(self) -> dict[int, SaeRecord]:
        """Each layer's SAE: from the SAE folder (any layout), else the one ``encode`` recorded."""
        return sae_records(self.saes_dir, encoded_saes(self.store))

    @cached_property
    def interventions(self) -> dict[str, dict[int, dict[str, Any]]]:
        """Summaries of every intervention experiment, by result key and layer."""
        return intervention_summaries(self.store)

    # ------------------------------------------------------------------ checks
    def check_feature(self, layer: int, feature: int) -> None:
        """Refuse a layer or feature id the store does not hold, saying which ones it does."""
        self.store.layer_index(layer)
        if self.d_sae is not None and not 0 <= feature < self.d_sae:
            raise FeatureNotFoundError(
                f"feature {feature} is out of range: the SAEs have features 0..{self.d_sae - 1}"
            )

    def sample_index(self, sample_id: str) -> int:
        """Position of ``sample_id``; refused with an example of the ids the store holds."""
        if sample_id not in self._sample_pos:
            examples = ", ".join(map(repr, self.labels.sample[:3]))
            raise SampleNotFoundError(
                f"sample {sample_id!r} is not in the store (it holds {self.n_samples} samples, "
                f"e.g. {examples}); check the id in the address or the search box"
            )
        return self._sample_pos[sample_id]

    def find_sample(self, text: str) -> str | None:
        """The sample id ``text`` names: itself, or the one id equal to it ignoring case."""
        if text in self._sample_pos:
            return text
        return self._folded.get(text.casefold())

    def similar_samples(self, text: str, n: int = 3) -> list[str]:
        """Up to ``n`` sample ids that look like ``text`` (ignoring case), most alike first: ids with the
        same numbers (``img_5`` for ``img_0005``), then the closest spellings."""
        key = _unpadded(text.casefold())
        same = [s for f, s in self._folded.items() if _unpadded(f) == key]
        close = difflib.get_close_matches(text.casefold(), list(self._folded), n=n, cutoff=0.6)
        return list(dict.fromkeys([*same, *(self._folded[c] for c in close)]))[:n]

    @cached_property
    def _folded(self) -> dict[str, str]:
        # lower-cased id -> id; ids that differ only in case are left out (no unique answer)
        seen = Counter(str(s).casefold() for s in self.labels.sample)
        return {str(s).casefold(): str(s) for s in self.labels.sample if seen[str(s).casefold()] == 1}

    # ------------------------------------------------------------------ reads
    def feature_column(self, variable: str, layer: int, language: str, feature: int) -> np.ndarray:
        """(sample,) one feature's per-sample statistic; NaN where the sample is not encoded."""
        assert self.features is not None
        sel = {S.LAYER: layer, S.LANGUAGE: language}
        col = self.features[variable].sel(sel).isel({S.FEATURE: feature, S.SAMPLE: slice(0, self.n_samples)})
        done = self.features[S.COMPLETE].sel(sel).isel({S.SAMPLE: slice(0, self.n_samples)})
        values, flags = np.asarray(col.values, np.float64), np.asarray(done.values, bool)
        return np.where(flags, values, np.nan)

    def firing_frequency(self, layer: int, language: str) -> np.ndarray:
        """(feature,) fraction of the summarised tokens (the roles ``encode`` kept) where each feature is
        active, over every encoded sample of ``layer`` in ``language`` (NaN when none is encoded);
        computed once per (layer, language) from ``feature_frac`` weighted by ``tokens_used``."""
        key = (layer, language)
        if key not in self._frequency:
            assert self.features is not None
            sel = {S.LAYER: layer, S.LANGUAGE: language}
            frac = self.features[S.FEATURE_FRAC].sel(sel).expand_dims(S.ROLE, axis=1)
            used = self.features[S.TOKENS_USED].sel(sel).expand_dims(S.ROLE, axis=1)
            self._frequency[key] = _pooled(frac, used, self._encoded(layer, language))[0]
        return self._frequency[key]

    def role_frequency(self, layer: int, language: str) -> dict[str, np.ndarray] | None:
        """Per token role ``encode`` kept, (feature,) the fraction of that role's tokens where each
        feature is active over every encoded sample of ``layer`` in ``language`` (NaN when none has a
        token of the role); computed once per (layer, language) from ``role_frac`` weighted by
        ``role_tokens``. None when the features group was encoded before those arrays existed."""
        assert self.features is not None
        if S.ROLE_FRAC not in self.features:
            return None
        key = (layer, language)
        if key not in self._role_frequency:
            sel = {S.LAYER: layer, S.LANGUAGE: language}
            frac, tokens = self.features[S.ROLE_FRAC].sel(sel), self.features[S.ROLE_TOKENS].sel(sel)
            pooled = _pooled(frac, tokens, self._encoded(layer, language))
            roles = map(str, self.features[S.ROLE].values)
            self._role_frequency[key] = dict(zip(roles, pooled, strict=True))
        return self._role_frequency[key]

    def _encoded(self, layer: int, language: str) -> np.ndarray:
        """Positions of the samples of ``layer`` encoded in ``language``."""
        assert self.features is not None
        done = self.features[S.COMPLETE].sel({S.LAYER: layer, S.LANGUAGE: language})
        return np.flatnonzero(done.isel({S.SAMPLE: slice(0, self.n_samples)}).values)

    def sample_row(self, variable: str, layer: int, language: str, sample: int) -> np.ndarray | None:
        """(feature,) one sample's statistic for every feature, or None if it is not encoded."""
        assert self.features is not None
        sel = {S.LAYER: layer, S.LANGUAGE: language}
        if not bool(self.features[S.COMPLETE].sel(sel).isel({S.SAMPLE: sample}).values):
            return None
        return np.asarray(self.features[variable].sel(sel).isel({S.SAMPLE: sample}).values)

    def tokens(
        self, language: str, sample: int, *, layer: int | None = None, feature: int | None = None
    ) -> SampleTokens:
        """A sample's token roles and ids; with ``layer`` and ``feature``, that feature's activation at
        every token (the stored residual stream encoded with the layer's SAE; None without an SAE)."""
        sel = {S.LANGUAGE: language}
        roles = np.asarray(self.root[S.TOKEN_ROLE].sel(sel).isel({S.SAMPLE: sample}).values)
        ids = np.asarray(self.root[S.INPUT_IDS].sel(sel).isel({S.SAMPLE: sample}).values)
        acts = None
        if layer is not None and feature is not None and self.saes.has(layer):
            x = self.root[S.ACTIVATIONS].sel({S.LAYER: layer, **sel}).isel({S.SAMPLE: sample})
            x_TD = np.nan_to_num(np.asarray(x.values, np.float32))
            acts = self.saes.feature_at_tokens(layer, x_TD, feature) * (roles != 0)
        return SampleTokens(roles=roles, ids=ids, acts=acts)

    def captions(self, sample: int) -> dict[str, dict[str, str]]:
        """Reference (and generated, if ``caption`` ran) captions per language."""
        out = {lang: {"reference": str(self.labels.captions[lang][sample])} for lang in self.languages}
        gen = self.generation
        if gen is not None and "generated_caption" in gen:
            for lang in self.languages:
                text = gen["generated_caption"].sel({S.LANGUAGE: lang}).isel({S.SAMPLE: sample}).values
                out[lang]["generated"] = str(strings(text).item()) if text is not None else ""
        return out


#: Bytes of per-sample fractions read at a time when pooling them (whole chunks of samples: at least
#: one), whatever the number of samples.
POOL_BYTES = 16 * 2**20


def _pooled(frac: xr.DataArray, tokens: xr.DataArray, rows: np.ndarray) -> np.ndarray:
    """(group, feature) active tokens over tokens, pooled over the samples ``rows``: ``frac`` (sample,
    group, feature) holds each sample's fraction of its tokens where a feature is active, ``tokens``
    (sample, group) its tokens (-1, not written, counts as 0); NaN where a group has no token."""
    weights = np.maximum(np.asarray(tokens.isel({S.SAMPLE: rows}).values, np.float32), 0.0)
    active = np.zeros(frac.shape[1:], np.float64)
    chunk = int(frac.encoding.get("preferred_chunks", {}).get(S.SAMPLE, 1))
    row_bytes = 4 * int(np.prod(frac.shape[1:]))
    step = chunk * max(1, POOL_BYTES // (chunk * row_bytes))
    for i in range(0, rows.size, step):
        part = np.asarray(frac.isel({S.SAMPLE: rows[i : i + step]}).values, np.float32)
        part = np.nan_to_num(part, copy=not part.flags.writeable)  # NaN: a sample without such tokens
        w = weights[i : i + step]
        for g in range(part.shape[1]):
            active[g] += w[:, g] @ part[:, g, :]
    total = weights.sum(axis=0, dtype=np.float64)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, active / total, np.nan).astype(np.float32)


def _unpadded(text: str) -> str:
    """``text`` with the leading zeros of its numbers dropped."""
    return re.sub(r"\d+", lambda m: str(int(m.group(0))), text)


def _folder(given: str | Path | None, store: ActivationStore, sibling: str, flag: str) -> Path | None:
    if given is None:
        return sibling_folder(store, sibling)
    path = Path(given)
    if not path.is_dir() and "{L}" not in str(given):  # an SAE pattern names no folder
        raise SaeStoreError(f"{flag} {str(path)!r} is not a folder; pass the folder the pipeline wrote")
    return path
