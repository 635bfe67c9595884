"""`TokenExplanation`: attributions over the tokens (or words) of a batch of texts.

Texts differ in length, so `values` is (N, longest) with zeros after each text's last token;
`tokens[i]` says how many of row i are real. Saved as JSON (tokens are strings, rows are
ragged); loading parses JSON and never unpickles.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leanlens.errors import BadInput, BadOption
from leanlens.explain.errorbars import NumericalError, error_from_npz
from leanlens.explain.explanation import Explanation, json_option

JSON_HINT = "load only files written by TokenExplanation.to_json()"
FORMAT = "leanlens-token-explanation/1"


@dataclass(frozen=True)
class TokenExplanation(Explanation):
    texts: tuple[str, ...] = ()
    tokens: tuple[tuple[str, ...], ...] = ()  # word pieces, or words with level="word"
    level: str = "token"  # "token" or "word"

    def token_values(self, i: int) -> np.ndarray:
        """Text i's values, one a token (no padding)."""
        return self.values[i, : len(self.tokens[i])]

    def pairs(self, i: int) -> list[tuple[str, float]]:
        """Text i's (token, value) pairs in reading order."""
        return list(zip(self.tokens[i], map(float, self.token_values(i))))

    def __str__(self) -> str:
        lines = [f"{self.method} over {self.level}s, {len(self)} texts"]
        for i in range(len(self)):
            cells = " ".join(f"{token}({value:+.3g})" for token, value in self.pairs(i))
            line = f"[{i}] class {int(self.target[i])}, score {float(self.predictions[i, self.target[i]]):.3g}: {cells}"
            if self.delta is not None:
                line += f"  delta {float(self.delta[i]):+.2g}"
            lines.append(line)
        return "\n".join(lines)

    def to_npz(self, path):
        raise BadOption("token explanations are saved as JSON: tokens are strings and texts differ in length",
                        "use explanation.to_json(path)")

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write every field as JSON (arrays as nested lists)."""
        path = Path(path)
        try:
            path.write_text(json.dumps(self.as_dict()))
        except OSError as error:
            raise BadInput(f"cannot write {str(path)!r}: {error.strerror or error}",
                           "check that the folder exists and is writable") from None
        return path

    def as_dict(self) -> dict:
        arrays = {name: _listed(getattr(self, name)) for name in ("values", "target", "predictions", "delta",
                                                                   "score", "base_values")}
        return {"format": FORMAT, "method": self.method, "level": self.level, "texts": list(self.texts),
                "tokens": [list(t) for t in self.tokens], **arrays,
                "options": {key: json_option(value) for key, value in self.options.items()},
                "error": None if self.error is None else _error_dict(self.error)}

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> TokenExplanation:
        """Load a file written by `to_json()`; anything else is one BadInput line."""
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise BadInput(f"no explanation file at {str(path)!r}", "check the path") from None
        except (OSError, ValueError) as error:
            raise BadInput(f"cannot read {str(path)!r} as JSON: {str(error).splitlines()[0][:200]}", JSON_HINT) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BadInput(f"{str(path)!r} is not a leanlens token explanation", JSON_HINT)
        try:
            return cls(values=np.asarray(data["values"], dtype=np.float32), method=str(data["method"]),
                       target=np.asarray(data["target"], dtype=np.int64),
                       predictions=np.asarray(data["predictions"], dtype=np.float32), options=dict(data["options"]),
                       delta=_array(data.get("delta")), score=_array(data.get("score")),
                       base_values=_array(data.get("base_values")), error=_error(data.get("error")),
                       texts=tuple(map(str, data["texts"])), tokens=tuple(tuple(map(str, t)) for t in data["tokens"]),
                       level=str(data["level"]))
        except (KeyError, TypeError, ValueError) as error:
            raise BadInput(f"{str(path)!r} is a damaged token explanation ({type(error).__name__}: {error})"[:300],
                           JSON_HINT) from None


def _listed(array):
    return None if array is None else np.asarray(array).tolist()


def _array(value):
    return None if value is None else np.asarray(value, dtype=np.float64)


def _error_dict(error: NumericalError) -> dict:
    """The error as the .npz path keeps it (NumericalError's header and arrays), in JSON lists."""
    return {"header": error.header(), "arrays": {name: _listed(array) for name, array in error.arrays().items()}}


def _error(data) -> NumericalError | None:
    if data is None:
        return None
    error = error_from_npz(data["header"], {name: np.asarray(values) for name, values in data["arrays"].items()})
    if error is None:
        raise ValueError(f"unknown numerical error {data['header']!r}")
    return error
