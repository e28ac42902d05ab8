"""The explanation, detection and fuzzing prompts (as delphi words them) and reading their replies.

An example is shown on one line as its tokens: text as decoded (line breaks as ``\\n``, special
tokens in square brackets), the image as ``[image: <caption>]`` and its marked tokens as
``<<image row,col>>``; the tokens where the feature is active are marked ``<<like this>>``. Each
prompt starts with a ``TASK:`` line, so a reader of the prompt (a person, a log, the rule-based
endpoint) knows which of the three it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from sae_store.errors import SaeStoreError

#: Version of the prompt wording (stored with the explanations; a change invalidates nothing cached
#: by accident, since the cache is keyed by the prompt text itself).
PROMPTS_VERSION = 1
MARK_OPEN, MARK_CLOSE = "<<", ">>"
SYSTEM = "You explain features of a vision-language model's sparse autoencoder. Answer briefly."


class ReplyError(SaeStoreError):
    """A reply that cannot be used (no list of the right length, no explanation)."""


def explain_prompt(examples: Sequence[str], activations: Sequence[float], *, images: bool) -> str:
    """Ask for an explanation of the feature active on the marked tokens of ``examples``."""
    seen = " Each example's image follows, with the patches where it is active outlined." if images else ""
    lines = [
        "TASK: explain",
        f"A feature is active on the tokens marked {MARK_OPEN}like this{MARK_CLOSE} in the examples below; "
        f"image tokens are written image row,col.{seen} In one short sentence, say what the feature "
        "responds to, naming the tokens or things in double quotes.",
        *(
            f"Example {i + 1} (activation {a:.2f}): {text}"
            for i, (text, a) in enumerate(zip(examples, activations, strict=True))
        ),
        "Reply with the explanation only.",
    ]
    return "\n".join(lines)


def detection_prompt(explanation: str, examples: Sequence[str]) -> str:
    """Ask, for each example, how likely the explained feature is active anywhere in it."""
    return "\n".join(
        [
            "TASK: detection",
            f"Explanation: {explanation}",
            "For each example below, give the probability (0 to 1) that the feature is active anywhere "
            "in it.",
            *(f"Example {i + 1}: {text}" for i, text in enumerate(examples)),
            f"Reply with a JSON list of {len(examples)} numbers, nothing else.",
        ]
    )


def fuzzing_prompt(explanation: str, examples: Sequence[str]) -> str:
    """Ask, for each example, how likely its marked tokens are those the explanation describes."""
    return "\n".join(
        [
            "TASK: fuzzing",
            f"Explanation: {explanation}",
            f"In each example some tokens are marked {MARK_OPEN}like this{MARK_CLOSE}. Give, for each, the "
            "probability (0 to 1) that the marked tokens are the ones the explanation describes.",
            *(f"Example {i + 1}: {text}" for i, text in enumerate(examples)),
            f"Reply with a JSON list of {len(examples)} numbers, nothing else.",
        ]
    )


def parse_explanation(reply: str) -> str:
    """The explanation in ``reply`` (its first non-empty line, without a leading label)."""
    for line in reply.splitlines():
        text = re.sub(r"^\s*(explanation\s*:)?\s*", "", line, flags=re.IGNORECASE).strip()
        if text:
            return text
    raise ReplyError("the explainer replied with no explanation")


def parse_probabilities(reply: str, n: int) -> list[float]:
    """The ``n`` probabilities of a detection or fuzzing reply (a JSON list; values clipped to [0, 1])."""
    found = re.search(r"\[[^\[\]]*\]", reply)
    if found is None:
        raise ReplyError(f"the scorer's reply holds no list: {reply[:80]!r}")
    try:
        values = json.loads(found.group(0))
    except json.JSONDecodeError as e:
        raise ReplyError(f"the scorer's list is not JSON: {found.group(0)[:80]!r}") from e
    if len(values) != n or not all(isinstance(v, int | float) for v in values):
        raise ReplyError(f"the scorer gave {len(values)} values for {n} examples: {found.group(0)[:80]!r}")
    return [min(1.0, max(0.0, float(v))) for v in values]


def examples_of(prompt: str) -> list[str]:
    """The example texts of a prompt made here (what follows ``Example i:`` or ``Example i (...):``)."""
    return re.findall(r"^Example \d+(?: \([^)]*\))?: (.*)$", prompt, flags=re.MULTILINE)


def marked(text: str) -> list[str]:
    """The marked spans of an example text."""
    return re.findall(re.escape(MARK_OPEN) + r"(.*?)" + re.escape(MARK_CLOSE), text)
