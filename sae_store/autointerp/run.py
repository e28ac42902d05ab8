"""``sae-store explain``: explain the chosen features, score each explanation per language, store it.

Explanations are written from examples of one language (``--explain-language``, English by default)
and scored by detection and fuzzing on held-out examples of every language of the store (English
and Arabic: cross-lingual faithfulness). All requests of a stage are sent together, ``concurrency``
at a time; the reply cache makes a rerun ask nothing again. The endpoint is checked before anything
is read or written, so a wrong URL changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sae_store.analyze.config import STATISTIC_VARIABLES
from sae_store.analyze.context import AnalysisContext, TorchEncoder
from sae_store.analyze.data import open_inputs
from sae_store.analyze.results import has_analysis, read_analysis
from sae_store.analyze.topsamples import select_features
from sae_store.autointerp.config import ExplainConfig
from sae_store.autointerp.examples import Example, draw_samples, load_examples
from sae_store.autointerp.explainers import Cached, Explainer, HttpExplainer, Prompt, ask_all, open_explainer
from sae_store.autointerp.prompts import ReplyError, explain_prompt, parse_explanation
from sae_store.autointerp.scoring import METHODS, Score, batches_of, evaluate, items
from sae_store.errors import SaeStoreError
from sae_store.progress import progress_bar
from sae_store.store import schema as S
from sae_store.store.results import strings

log = logging.getLogger(__name__)


@dataclass
class Entry:
    """One explained feature."""

    layer: int
    feature: int
    direction: str
    explainer: str
    explain_language: str
    shown: list[Example]
    image_feature: bool
    images_shown: bool
    explanation: str = ""
    status: str = "unscored: not explained"
    held: dict[str, list[Example]] = field(default_factory=dict)
    scores: dict[tuple[str, str], Score] = field(default_factory=dict)


def parse_features(spec: str, bias: Any, layers: list[int], language: str) -> list[tuple[int, int, str]]:
    """(layer, feature, direction) of ``significant``, ``top:N`` or ``L:F,L:F``."""
    if spec != "significant" and not spec.startswith("top:"):
        try:
            pairs = [tuple(int(x) for x in part.split(":")) for part in spec.split(",") if part]
            return [(la, f, "given") for la, f in pairs]
        except ValueError:
            raise SaeStoreError(
                f"--features {spec!r}: give significant, top:N or L:F,L:F (e.g. 2:17,3:5)"
            ) from None
    if bias is None:
        raise SaeStoreError(f"--features {spec} needs the bias results; run `sae-store analyze bias` first")
    n = 0 if spec == "significant" else int(spec.removeprefix("top:"))
    out = []
    for layer in layers:
        chosen, direction = select_features(bias, layer, language, n)
        out += [(layer, int(f), d) for f, d in zip(chosen, direction, strict=True)]
    return out


@contextmanager
def explainer_for(config: ExplainConfig, cache: Path) -> Iterator[Explainer]:
    """The configured explainer, cached; ``loopback`` starts the rule-based endpoint for the duration."""
    from sae_store.autointerp.loopback import serve_loopback

    if config.explainer == "loopback":
        with serve_loopback() as server:
            http = HttpExplainer(
                server.url, "rule", timeout=config.timeout, retries=config.retries, images=False
            )
            http.name = "loopback:rule"  # its port changes from run to run; its answers do not
            yield Cached(http, cache)
        return
    inner = open_explainer(
        config.explainer,
        model=config.explainer_model,
        images=config.images,
        timeout=config.timeout,
        retries=config.retries,
        device=config.device,
        max_new_tokens=config.max_new_tokens,
    )
    yield Cached(inner, cache)


def explain(
    store_path: str | Path,
    saes: str,
    config: ExplainConfig,
    *,
    export: Path | None = None,
    layers: list[int] | None = None,
) -> list[Entry]:
    """Explain and score the features ``config.features`` names; store them (and export them)."""
    from sae_store.autointerp.results import export_delphi, write_entries

    inputs = open_inputs(store_path)
    cache = Path(config.cache) if config.cache else inputs.store.path.parent / ".explain-cache"
    with explainer_for(config, cache) as explainer:
        explainer.check()
        if not explainer.takes_images:
            log.info(
                "%s takes no images: image-token features are explained from text contexts", explainer.name
            )
        entries = collect_examples(inputs, saes, config, explainer, layers)
        ask(entries, explainer, config)
    write_entries(inputs.store, entries, config)
    if export is not None:
        export_delphi(entries, export)
    return entries


def collect_examples(
    inputs: Any, saes: str, config: ExplainConfig, explainer: Explainer, layers: list[int] | None
) -> list[Entry]:
    """The chosen features with their examples (shown and held out), not yet explained."""
    store, features, labels = inputs
    languages = [str(v) for v in features[S.LANGUAGE].values]
    if config.explain_language not in languages:
        raise SaeStoreError(
            f"--explain-language {config.explain_language!r} is not in the store's {languages}"
        )
    all_layers = layers or [int(v) for v in features[S.LAYER].values]
    bias = read_analysis(store, "bias") if has_analysis(store, "bias") else None
    chosen = parse_features(config.features, bias, all_layers, config.explain_language)
    ctx = AnalysisContext(
        inputs, store.path.parent, saes_spec=saes, layers=sorted({la for la, _, _ in chosen})
    )
    encoders = {layer: TorchEncoder(sae) for layer, sae in ctx.saes().items()}
    decode = ctx.token_decoder()
    ids = strings(features[S.SAMPLE].values)
    entries = []
    for layer, feature, direction in progress_bar(chosen, desc="examples", unit="feature"):
        rng = np.random.default_rng([config.seed, layer, feature])  # the same draw whatever else is explained
        if not 0 <= feature < features.sizes["feature"]:
            raise SaeStoreError(f"feature {feature} is out of range: the SAE has {features.sizes['feature']}")
        values = {
            lang: np.asarray(
                features[STATISTIC_VARIABLES["max"]]
                .sel({S.LAYER: layer, S.LANGUAGE: lang})
                .isel(feature=feature)
                .values
            )
            for lang in languages
        }
        valid = {
            lang: np.asarray(features[S.COMPLETE].sel({S.LAYER: layer, S.LANGUAGE: lang}).values, bool)
            for lang in languages
        }
        draw = draw_samples(
            values[config.explain_language],
            valid[config.explain_language],
            n_top=config.n_top,
            n_quantiles=config.n_quantiles,
            n_random=config.n_random,
            n_held=config.n_held,
            rng=rng,
        )
        load = dict(ids=ids, labels=labels, encode=encoders[layer], decode=decode)
        shown = load_examples(store, layer, config.explain_language, feature, draw.shown, **load)
        image_feature = bool(shown) and float(np.mean([e.image_share() for e in shown])) > 0.5
        entry = Entry(
            layer,
            feature,
            direction,
            explainer.name,
            config.explain_language,
            shown,
            image_feature,
            image_feature and explainer.takes_images,
        )
        used = {r for r, _ in draw.shown}
        for lang in languages:
            fire = (
                [r for r in draw.held]
                if lang == config.explain_language
                else [
                    r
                    for r in np.argsort(-values[lang])
                    if valid[lang][r] and values[lang][r] > 0 and r not in used
                ][: config.n_held]
            )
            none = [r for r in draw.none if values[lang][r] <= 0] or [
                r for r in rng.permutation(np.flatnonzero(valid[lang] & (values[lang] <= 0)))[: len(fire)]
            ]
            rows = [(int(r), "held") for r in fire] + [(int(r), "none") for r in none]
            entry.held[lang] = load_examples(store, layer, lang, feature, rows, **load)
        entries.append(entry)
    return entries


def ask(entries: list[Entry], explainer: Explainer, config: ExplainConfig) -> None:
    """Explain every entry, then score every explanation (each stage's requests sent together)."""
    _ask_explanations(entries, explainer, config)
    _score(entries, explainer, config)


def _ask_explanations(entries: list[Entry], explainer: Explainer, config: ExplainConfig) -> None:
    prompts = []
    for e in entries:
        images = tuple(im for x in e.shown if (im := x.marked_image()) is not None) if e.images_shown else ()
        text = explain_prompt(
            [x.render(x.top_positions()) for x in e.shown],
            [float(x.activations.max()) for x in e.shown],
            images=bool(images),
        )
        prompts.append(Prompt(text, images))
    with progress_bar(total=len(prompts), desc="explanations", unit="prompt") as bar:
        replies = ask_all(explainer, prompts, config.concurrency, lambda: bar.update(1))
    for e, reply in zip(entries, replies, strict=True):
        try:
            if isinstance(reply, ReplyError):
                raise reply
            e.explanation = parse_explanation(reply)
        except ReplyError as err:
            e.status = f"unscored: {err}"


def _score(entries: list[Entry], explainer: Explainer, config: ExplainConfig) -> None:
    plan = []
    for e in entries:
        if not e.explanation:
            continue
        for lang, held in e.held.items():
            fire, none = [x for x in held if x.kind == "held"], [x for x in held if x.kind == "none"]
            for m, method in enumerate(METHODS):
                rng = np.random.default_rng([config.seed, e.layer, e.feature, m, sorted(e.held).index(lang)])
                shown = items(method, fire, none, rng)
                plan.append((e, lang, method, batches_of(e.explanation, shown, method, config.batch)))
    prompts = [p for *_, batches in plan for _, p in batches]
    with progress_bar(total=len(prompts), desc="scoring", unit="prompt") as bar:
        replies = iter(ask_all(explainer, prompts, config.concurrency, lambda: bar.update(1)))
    for e, lang, method, batches in plan:
        e.scores[(lang, method)] = evaluate([b for b, _ in batches], [next(replies) for _ in batches])
    for e in entries:
        if e.explanation:
            scored = any(s.records for s in e.scores.values())
            problem = next((s.problem for s in e.scores.values() if s.problem), "no usable scores")
            e.status = "scored" if scored else f"unscored: {problem}"
