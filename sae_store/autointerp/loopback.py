"""A rule-based OpenAI-compatible chat endpoint on 127.0.0.1: the demo's and the tests' HTTP explainer.

It speaks the chat-completions protocol (``POST /v1/chat/completions``, ``GET /v1/models``) and
answers every prompt of :mod:`~sae_store.autointerp.prompts` by a fixed, honest rule computed from the
prompt itself, so scores mean what they say:

- **explain**: the span marked most often in the examples: ``Active on "<span>".``
- **detection**: 1 for an example that contains a term the explanation quotes, else 0;
- **fuzzing**: 1 for an example whose marked spans are all quoted by the explanation, else 0.

Images (``image_url`` parts of a user message, as a vision model's server takes them) must be
``data:image/...;base64,`` URLs that Pillow decodes, else the request gets HTTP 400 as a vision
server answers; :attr:`LoopbackServer.images` keeps the size of each image received.

The model name picks a behaviour for exercising clients: ``malformed`` answers a body that is not
JSON, ``empty`` an empty message, ``slow`` waits :attr:`LoopbackServer.delay` seconds first; any other
name follows the rules.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

from sae_store.autointerp.prompts import examples_of, marked


def _quoted(prompt: str) -> list[str]:
    line = next((x for x in prompt.splitlines() if x.startswith("Explanation:")), "")
    return [q.strip().lower() for q in re.findall(r'"([^"]+)"', line) if q.strip()]


def answer(prompt: str) -> str:
    """The rule's reply to one prompt."""
    task = prompt.splitlines()[0] if prompt else ""
    examples = examples_of(prompt)
    if task == "TASK: explain":
        counts = Counter(s.strip() for text in examples for s in marked(text) if s.strip())
        return f'Active on "{counts.most_common(1)[0][0]}".' if counts else ""
    quoted = _quoted(prompt)
    if task == "TASK: detection":
        plain = [text.replace("<<", "").replace(">>", "").lower() for text in examples]
        return json.dumps([int(any(q in text for q in quoted)) for text in plain])
    if task == "TASK: fuzzing":
        spans = [[s.strip().lower() for s in marked(text)] for text in examples]
        return json.dumps([int(bool(s) and all(x in quoted for x in s)) for s in spans])
    return "I can only answer explain, detection and fuzzing prompts."


def _image(part: dict[str, Any]) -> Image.Image | str:
    """The image of an ``image_url`` part, or why it is not one."""
    url = str((part.get("image_url") or {}).get("url", ""))
    head, _, data = url.partition(";base64,")
    if not head.startswith("data:image/") or not data:
        return f"image_url must be a data:image/...;base64, URL, got {url[:40]!r}"
    try:
        with Image.open(io.BytesIO(base64.b64decode(data, validate=True))) as im:
            im.load()
            return im.copy()
    except (binascii.Error, ValueError, OSError) as e:
        return f"image_url does not decode to an image: {e}"


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, json.dumps({"data": [{"id": "rule", "object": "model"}]}).encode())
        else:
            self._send(404, b'{"error": "not found"}')

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, b'{"error": "not found"}')
            return
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        model = str(request.get("model", ""))
        self.server.requests += 1
        if model == "slow":
            time.sleep(self.server.delay)
        if model == "malformed":
            self._send(200, b"this is not JSON")
            return
        content = request["messages"][-1]["content"]
        parts = [] if isinstance(content, str) else content
        images = []
        for part in (p for p in parts if p.get("type") == "image_url"):
            image = _image(part)
            if isinstance(image, str):
                self._send(
                    400, json.dumps({"error": {"message": image, "type": "invalid_request_error"}}).encode()
                )
                return
            images.append(image.size)
        self.server.images.extend(images)
        text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in parts)
        reply = "" if model == "empty" else answer(text)
        body = {
            "object": "chat.completion",
            "model": model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
            ],
        }
        self._send(200, json.dumps(body).encode())


class LoopbackServer(ThreadingHTTPServer):
    """The endpoint; :attr:`url` is its base URL (``http://127.0.0.1:<port>/v1``)."""

    daemon_threads = True

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.delay = delay
        self.requests = 0
        self.images: list[tuple[int, int]] = []
        """(width, height) of every image received, in order."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (it timed out) is not an error of the endpoint."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@contextmanager
def serve_loopback(delay: float = 0.0) -> Iterator[LoopbackServer]:
    """Run the endpoint on a free port of 127.0.0.1 for the duration of the ``with`` block."""
    server = LoopbackServer(delay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
