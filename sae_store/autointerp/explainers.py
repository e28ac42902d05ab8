"""Explainers behind one small interface: a local transformers model folder or an OpenAI-compatible
chat endpoint, with retries, a timeout, a reply cache and concurrent requests.

An :class:`Explainer` turns one prompt (text, and images if it :attr:`~Explainer.takes_images`) into
one reply. :class:`Cached` keeps every usable reply on disk keyed by the explainer, the prompt and
the images, so a rerun asks nothing again; :func:`ask_all` runs many prompts ``concurrency`` at a
time, keeping their order.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from sae_store.autointerp.prompts import SYSTEM, ReplyError
from sae_store.errors import SaeStoreError

log = logging.getLogger(__name__)


class EndpointError(SaeStoreError):
    """The chat endpoint cannot be used at all (unreachable, wrong URL, refused)."""


@dataclass(frozen=True)
class Prompt:
    text: str
    images: tuple[Image.Image, ...] = field(default=(), compare=False)


class Explainer(Protocol):
    name: str
    """Who answers (stored with each explanation): ``local:<folder>`` or ``http:<url>#<model>``."""
    takes_images: bool

    def check(self) -> None:
        """Fail with one clear message if the explainer cannot answer at all."""

    def complete(self, prompt: Prompt) -> str:
        """The reply to ``prompt`` (raises :class:`ReplyError` for a reply that is not usable)."""


def _png_data_url(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


class HttpExplainer:
    """Any OpenAI-compatible chat endpoint (vLLM, llama.cpp server, ...) given by its base URL."""

    def __init__(self, url: str, model: str, *, timeout: float, retries: int, images: bool) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.timeout = timeout
        self.retries = retries
        self.takes_images = images
        self.name = f"http:{self.url}#{model}"

    @property
    def endpoint(self) -> str:
        return f"{self.url}/chat/completions"

    def _post(self, body: dict[str, Any]) -> bytes:
        request = urllib.request.Request(
            self.endpoint, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return bytes(response.read())

    def _body(self, prompt: Prompt, max_tokens: int = 400) -> dict[str, Any]:
        content: Any = prompt.text
        if prompt.images and self.takes_images:
            content = [{"type": "text", "text": prompt.text}] + [
                {"type": "image_url", "image_url": {"url": _png_data_url(im)}} for im in prompt.images
            ]
        return {
            "model": self.model,
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}],
            "temperature": 0,
            "max_tokens": max_tokens,
        }

    def check(self) -> None:
        try:
            self._post(self._body(Prompt("Reply OK."), max_tokens=4))
        except urllib.error.HTTPError as e:
            raise EndpointError(
                f"the explainer endpoint {self.endpoint} answered HTTP {e.code} ({e.reason}); check the URL "
                "(the base URL ends in /v1) and --explainer-model"
            ) from None
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise EndpointError(
                f"the explainer endpoint {self.endpoint} cannot be reached ({reason}); start the server or "
                "fix --explainer"
            ) from None

    def complete(self, prompt: Prompt) -> str:
        body = self._body(prompt)
        for attempt in range(self.retries + 1):
            try:
                raw = self._post(body)
                break
            except urllib.error.HTTPError as e:
                if (e.code != 429 and e.code < 500) or attempt == self.retries:
                    raise ReplyError(f"HTTP {e.code} from {self.endpoint}") from None
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                if attempt == self.retries:
                    raise ReplyError(f"no reply from {self.endpoint} ({getattr(e, 'reason', e)})") from None
            time.sleep(0.5 * 2**attempt)
        try:
            return str(json.loads(raw)["choices"][0]["message"]["content"] or "")
        except (json.JSONDecodeError, KeyError, IndexError, TypeError):
            raise ReplyError(f"malformed reply from {self.endpoint}: {raw[:80]!r}") from None


class LocalExplainer:
    """A transformers model folder: a vision-language model (it sees the images) or a text-only one."""

    def __init__(self, folder: str | Path, *, device: str, max_new_tokens: int) -> None:
        from transformers import AutoConfig

        self.folder = Path(folder)
        self.name = f"local:{self.folder.resolve()}"
        self.max_new_tokens = max_new_tokens
        self._lock = threading.Lock()
        config = AutoConfig.from_pretrained(self.folder, local_files_only=True)
        self.takes_images = getattr(config, "vision_config", None) is not None
        if self.takes_images:
            from sae_store.models.loader import load_model

            loaded = load_model(self.folder, device=device)
            self.model: Any = loaded.model
            self.processor = loaded.processor
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from sae_store.device import resolve_device

            self.processor = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
            model: Any = AutoModelForCausalLM.from_pretrained(self.folder, local_files_only=True)
            self.model = model.to(resolve_device(device)).eval()

    def check(self) -> None:
        return None

    def _inputs(self, prompt: Prompt) -> Any:
        parts: list[dict[str, Any]] = [
            {"type": "image", "image": im} for im in prompt.images if self.takes_images
        ]
        parts.append({"type": "text", "text": f"{SYSTEM}\n\n{prompt.text}"})
        messages = [{"role": "user", "content": parts if self.takes_images else parts[-1]["text"]}]
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
            )
        return self.processor(parts[-1]["text"], return_tensors="pt")

    def complete(self, prompt: Prompt) -> str:
        import torch

        with self._lock, torch.no_grad():
            inputs = self._inputs(prompt).to(self.model.device)
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
            new = out[0, inputs["input_ids"].shape[1] :]
            tokenizer = getattr(self.processor, "tokenizer", self.processor)
            return str(tokenizer.decode(new, skip_special_tokens=True))


class Cached:
    """Any explainer with its usable replies kept in ``folder`` (one JSON file per prompt)."""

    def __init__(self, inner: Explainer, folder: Path) -> None:
        self.inner, self.folder = inner, folder
        self.name, self.takes_images = inner.name, inner.takes_images
        self.hits = 0

    def check(self) -> None:
        self.inner.check()

    def _key(self, prompt: Prompt) -> Path:
        h = hashlib.sha256(f"{self.name}\n{prompt.text}".encode())
        for image in prompt.images if self.takes_images else ():
            h.update(image.convert("RGB").tobytes())
        digest = h.hexdigest()
        return self.folder / digest[:2] / f"{digest}.json"

    def complete(self, prompt: Prompt) -> str:
        path = self._key(prompt)
        if path.exists():
            self.hits += 1
            return str(json.loads(path.read_text())["reply"])
        reply = self.inner.complete(prompt)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({"reply": reply}, ensure_ascii=False))
        tmp.replace(path)
        return reply


def open_explainer(
    spec: str, *, model: str, images: bool, timeout: float, retries: int, device: str, max_new_tokens: int
) -> Explainer:
    """The explainer ``spec`` names: an ``http(s)://`` base URL or a local model folder."""
    if spec.startswith(("http://", "https://")):
        return HttpExplainer(spec, model, timeout=timeout, retries=retries, images=images)
    if not Path(spec).is_dir():
        raise SaeStoreError(
            f"--explainer {spec!r} is neither a model folder nor an http(s):// URL; give a transformers "
            "model folder, the base URL of an OpenAI-compatible endpoint, or loopback"
        )
    return LocalExplainer(spec, device=device, max_new_tokens=max_new_tokens)


def ask_all(
    explainer: Explainer,
    prompts: Sequence[Prompt],
    concurrency: int,
    on_done: Callable[[], Any] | None = None,
) -> list[str | ReplyError]:
    """Every prompt's reply, or its :class:`ReplyError`, in order; ``concurrency`` requests at a time."""

    def one(prompt: Prompt) -> str | ReplyError:
        try:
            return explainer.complete(prompt)
        except ReplyError as e:
            log.warning("%s: %s", explainer.name, e)
            return e
        finally:
            if on_done is not None:
                on_done()

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(one, prompts))
