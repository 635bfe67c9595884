"""An explanation's numerical error (`Explanation.error`) as one JSON text column.

Its arrays go in as (dtype, shape, base64 of the raw bytes), as the store keeps every
array: plain data, never pickle. A stored text that does not read back as an error (a
hand-edited store) is refused, not guessed at.
"""

from __future__ import annotations

import base64
import binascii
import json

from leanlens.errors import BadInput
from leanlens.explain.errorbars import KINDS, NumericalError, error_from_npz
from leanlens.store.arrays import decode, encode


def error_json(error: NumericalError | None) -> str | None:
    """The error as JSON, None for a method with no estimate of its own error."""
    if error is None:
        return None
    arrays = {}
    for name, array in error.arrays().items():
        dtype, shape, data = encode(array, f"error array {name}")
        arrays[name] = [dtype, shape, base64.b64encode(data).decode("ascii")]
    return json.dumps({"header": error.header(), "arrays": arrays})


def error_from_json(text: str | None) -> NumericalError | None:
    """The error `error_json` wrote; None stays None."""
    if text is None:
        return None
    stored = None
    try:
        stored = json.loads(text)
        arrays = {name: decode(dtype, shape, base64.b64decode(data, validate=True))
                  for name, (dtype, shape, data) in stored["arrays"].items()}
        error = error_from_npz(stored["header"], arrays)
    except (ValueError, KeyError, TypeError, binascii.Error):
        error = None
    header = stored.get("header") if error is None and isinstance(stored, dict) else None
    kind = header.get("kind") if isinstance(header, dict) else None
    if isinstance(kind, str) and kind not in KINDS:  # well formed, from a leanlens that knows more kinds
        raise BadInput(f"a stored explanation's numerical error is of a kind this leanlens does not know ({kind!r})",
                       "the store was written by a newer leanlens: upgrade leanlens to read it")
    if error is None:
        raise BadInput("a stored explanation's numerical error cannot be read",
                       "the store file was changed outside leanlens; restore it from a copy")
    return error
