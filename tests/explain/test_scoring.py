"""Detection and fuzzing against a real loopback endpoint speaking the OpenAI chat protocol."""

from __future__ import annotations

import numpy as np
import pytest

from sae_store.autointerp.examples import Example
from sae_store.autointerp.explainers import EndpointError, HttpExplainer, Prompt
from sae_store.autointerp.loopback import serve_loopback
from sae_store.autointerp.prompts import ReplyError, explain_prompt, parse_explanation
from sae_store.autointerp.scoring import items, score
from sae_store.roles import TokenRole

WORDS = ["a", " man", " with", " beard", " dog", " red", " hat", " on", " street", " tree", " car"]


def _planted(n: int, rng: np.random.Generator) -> tuple[list[Example], list[Example]]:
    """Sentences of random words; the feature fires exactly on " beard" (so half contain it)."""
    firing, silent = [], []
    for i in range(2 * n):
        tokens = list(rng.choice([w for w in WORDS if w != " beard"], 8))
        if i < n:
            tokens[int(rng.integers(8))] = " beard"
        acts = np.array([3.0 if t == " beard" else 0.0 for t in tokens], dtype=np.float32)
        ex = Example(
            f"s{i}", "held" if i < n else "none", tokens, acts, np.full(8, TokenRole.TEXT), "", "", 0
        )
        (firing if i < n else silent).append(ex)
    return firing, silent


def _client(url: str, model: str = "rule", timeout: float = 5.0) -> HttpExplainer:
    return HttpExplainer(url, model, timeout=timeout, retries=0, images=False)


def test_detection_has_the_known_answer() -> None:
    rng = np.random.default_rng(0)
    firing, silent = _planted(12, rng)
    with serve_loopback() as server:
        client = _client(server.url)
        explained = parse_explanation(
            client.complete(
                Prompt(
                    explain_prompt([e.render(e.top_positions()) for e in firing[:4]], [3.0] * 4, images=False)
                )
            )
        )
        assert explained == 'Active on "beard".'
        right = score(
            client, explained, items("detection", firing, silent, rng), "detection", batch=8, concurrency=4
        )
        wrong = score(
            client,
            'Active on "zebra".',
            items("detection", firing, silent, rng),
            "detection",
            batch=8,
            concurrency=4,
        )
        fuzz = score(
            client, explained, items("fuzzing", firing, silent, rng), "fuzzing", batch=8, concurrency=4
        )
    assert right.balanced_accuracy >= 0.9 and right.auc >= 0.9
    assert wrong.balanced_accuracy == pytest.approx(0.5) and wrong.auc == pytest.approx(0.5)
    assert fuzz.balanced_accuracy >= 0.9
    assert len(right.records) == 24 and all(r["correct"] for r in right.records)


def test_timeout_malformed_and_empty_replies_are_unusable_not_fatal() -> None:
    with serve_loopback(delay=2.0) as server:
        with pytest.raises(ReplyError, match=r"no reply from http://127\.0\.0\.1:\d+/v1/chat/completions"):
            _client(server.url, "slow", timeout=0.3).complete(Prompt("TASK: explain"))
        with pytest.raises(ReplyError, match=r"malformed reply from .*b'this is not JSON'"):
            _client(server.url, "malformed").complete(Prompt("TASK: explain"))
        empty = _client(server.url, "empty")
        with pytest.raises(ReplyError, match="the explainer replied with no explanation"):
            parse_explanation(empty.complete(Prompt("TASK: explain")))
        firing, silent = _planted(4, np.random.default_rng(1))
        unscored = score(
            _client(server.url, "malformed"),
            'Active on "beard".',
            items("detection", firing, silent, np.random.default_rng(1)),
            "detection",
            batch=4,
            concurrency=2,
        )
    assert np.isnan(unscored.balanced_accuracy) and unscored.problem.startswith("malformed reply")


def test_wrong_and_unreachable_endpoints_are_one_line() -> None:
    with serve_loopback() as server:
        wrong = server.url.removesuffix("/v1") + "/api"
        with pytest.raises(EndpointError) as info:
            _client(wrong).check()
        assert str(info.value) == (
            f"the explainer endpoint {wrong}/chat/completions answered HTTP 404 (Not Found); check the URL "
            "(the base URL ends in /v1) and --explainer-model"
        )
        closed = server.url
    with pytest.raises(
        EndpointError,
        match=r"^the explainer endpoint http://127\.0\.0\.1:\d+/v1/chat/completions "
        r"cannot be reached \(.*\); start the server or fix --explainer$",
    ):
        _client(closed, timeout=2).check()


def test_images_go_as_data_urls_and_a_broken_one_is_refused_as_a_vision_server_does() -> None:
    import json
    import urllib.error
    import urllib.request

    from PIL import Image

    picture = Image.new("RGB", (40, 30), "red")
    with serve_loopback() as server:
        client = HttpExplainer(server.url, "rule", timeout=5.0, retries=0, images=True)
        prompt = explain_prompt(["a <<man>> with a beard"], [2.0], images=True)
        assert client.complete(Prompt(prompt, (picture, picture))) == 'Active on "man".'
        assert server.images == [(40, 30), (40, 30)]  # both sent, each decoded as an image
        broken = {"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGEgcG5n"}}
        body = client._body(Prompt(prompt))
        body["messages"][-1]["content"] = [{"type": "text", "text": prompt}, broken]
        request = urllib.request.Request(
            client.endpoint, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=5)
        assert info.value.code == 400
        message = json.loads(info.value.read())["error"]["message"]
        assert message.startswith("image_url does not decode to an image: cannot identify image file")
        assert server.images == [(40, 30), (40, 30)]
        # a client that sends no images sends none, whatever the prompt carries
        _client(server.url).complete(Prompt(prompt, (picture,)))
        assert len(server.images) == 2


@pytest.mark.parametrize("spec", ["top:x", "beard", "top:"])
def test_a_bad_feature_spec_is_refused_naming_the_forms(spec: str) -> None:
    from sae_store.autointerp.config import ExplainConfig
    from sae_store.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        ExplainConfig(features=spec)
    assert str(info.value) == f"--features {spec!r}: give significant, top:N or L:F,L:F (e.g. 2:17,3:5)"
