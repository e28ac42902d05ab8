"""Settings of ``sae-store explain`` (declared once: options, YAML keys and messages follow)."""

from __future__ import annotations

from dataclasses import dataclass

from sae_store.configbase import Settings, seed_setting, setting
from sae_store.device import device_setting
from sae_store.errors import ConfigError


@dataclass(frozen=True)
class ExplainConfig(Settings):
    """How features are explained and scored (``sae-store explain``)."""

    explainer: str = setting(
        "loopback",
        help="a local model folder, an OpenAI-compatible chat URL (http://host:port/v1), or loopback",
        metavar="DIR|URL",
    )
    """Who writes and scores explanations: a transformers model folder (a VLM such as Gemma 3 also sees
    the images), the base URL of an OpenAI-compatible chat endpoint (vLLM, llama.cpp server), or
    ``loopback``: the rule-based endpoint of :mod:`~sae_store.autointerp.loopback` started on 127.0.0.1."""
    explainer_model: str = setting("default", help="model name sent to a chat endpoint", metavar="NAME")
    images: bool = setting(
        False, help="send images to a chat endpoint (a local model folder is asked itself)"
    )
    """Whether the chat endpoint takes images (OpenAI ``image_url`` parts); a local folder says itself
    whether its model takes images."""
    features: str = setting(
        "top:2", help="significant, top:N (per direction and layer) or L:F,L:F", metavar="SPEC"
    )
    explain_language: str = setting("en", help="language of the examples explained", metavar="LANG")
    n_top: int = setting(5, help="top-activation examples shown to the explainer", metavar="N", ge=1)
    n_quantiles: int = setting(3, help="activation quantiles, one example each shown", metavar="N", ge=0)
    n_random: int = setting(2, help="random firing examples shown", metavar="N", ge=0)
    n_held: int = setting(
        8, help="held-out firing and as many non-firing examples scored per language", metavar="N", ge=1
    )
    batch: int = setting(8, help="examples per scoring prompt", metavar="N", ge=1)
    concurrency: int = setting(4, help="requests in flight at once", metavar="N", ge=1)
    retries: int = setting(2, help="retries of a failed request (timeouts, 5xx, 429)", metavar="N", ge=0)
    timeout: float = setting(60.0, help="seconds to wait for one reply", metavar="S", gt=0)
    max_new_tokens: int = setting(120, help="tokens a local model generates per reply", metavar="N", ge=1)
    cache: str = setting(
        "", help="cache folder of replies (default: .explain-cache beside the store)", metavar="DIR"
    )
    device: str = device_setting()
    seed: int = seed_setting("seed of the random examples and of fuzzing's false marks")

    def check(self) -> None:
        spec = self.features
        top = spec.startswith("top:")
        if (top and not spec[4:].isdigit()) or not (spec == "significant" or top or ":" in spec):
            raise ConfigError(f"--features {spec!r}: give significant, top:N or L:F,L:F (e.g. 2:17,3:5)")
