"""Attachments: results about a version that are not per-sample maps, kept as JSON by kind.

A kind is a short name (`importance`, `surrogate`, `reasons`, `tokens`) that the report looks
up to draw the payload; a payload is a JSON object, checked to be one before anything is
written: plain Python values only, no NaN (JSON has none), nothing pickled.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from leanlens.errors import BadInput

KIND = re.compile(r"[a-z][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class Attachment:
    """One attachment of a version: its kind, when it was recorded and its JSON payload."""

    kind: str
    created: str
    payload: dict


def check_kind(kind) -> str:
    if not isinstance(kind, str) or not KIND.fullmatch(kind):
        raise BadInput(f"attachment kind {kind!r} is not a short lowercase name",
                       "use letters, digits, '-' or '_', starting with a letter, e.g. 'importance'")
    return kind


def payload_json(payload) -> str:
    """The payload as JSON text, or BadInput saying what in it is not JSON."""
    if not isinstance(payload, Mapping):
        raise BadInput(f"the attachment's payload is a {type(payload).__name__}, not a mapping", "pass a dict")
    if bad := [key for key in payload if not isinstance(key, str)]:
        raise BadInput(f"the attachment's payload has a key {bad[0]!r} that is not text", "use str keys")
    try:
        return json.dumps(dict(payload), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise BadInput(f"the attachment's payload is not JSON: {error}",
                       "pass plain numbers, strings, lists and dicts (NumPy arrays: .tolist(); no NaN)") from None
