"""Token attributions: `ll.explain(model, ["a text", ...], method, tokenizer=...)`.

The texts are tokenized and padded once; targets are settled from one forward pass on the
padded batch; then the method runs on the embeddings ("ig", the whole batch at once) or on
each text's own tokens (the forward-only methods, see `leanlens.text.token_methods`). Only a
text's own tokens get values: [CLS], [SEP] and padding never do. With `level="word"` the
values of a word's pieces are summed ("un", "##believ", "##able" -> "unbelievable").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from leanlens.errors import BadOption
from leanlens.explain.errorbars import NumericalError
from leanlens.explain.options import positive_int
from leanlens.explain.targets import Targets
from leanlens.text.adapter import text_model
from leanlens.text.token_explanation import TokenExplanation
from leanlens.text.token_methods import (
    check_text_method,
    check_text_options,
    embedding_ig,
    forward_only,
)
from leanlens.text.tokens import Encoded, checked_texts, encode, sum_by_word

LEVELS = ("token", "word")


def is_text_batch(x) -> bool:
    """Whether `x` holds texts: a string, or a sequence, array or pandas Series with a string in it."""
    if isinstance(x, str):
        return True
    if type(x).__name__ == "Series":  # a pandas column of texts
        x = x.to_numpy()
    if isinstance(x, np.ndarray):  # one text a row: a 2-D array of strings is a table, refused as such
        return x.ndim == 1 and (x.dtype.kind == "U" or any(isinstance(item, str) for item in x))
    return isinstance(x, (list, tuple)) and any(isinstance(item, str) for item in x)


def explain_text(model, texts, method: str = "ig", target=None, *, tokenizer=None, level: str = "token",
                 max_length: int = 512, on_step: Callable[[int, int], None] | None = None,
                 **options) -> TokenExplanation:
    """Attribute each text's target score to its tokens (or words).

    Parameters
    ----------
    model : a leanlens TextClassifier, a transformers sequence classifier, or a leanlens model of
        token ids (forward-only methods; e.g. a quantized text classifier).
    texts : a list of strings.
    method : "ig" (on the word embeddings, pad-token baseline), or "occlusion", "kernelshap",
        "shapley", "lime" (removed tokens become [MASK]).
    tokenizer : the model's transformers tokenizer (a fast one); found for a TextClassifier.
    level : "token" (word pieces) or "word" (each word's pieces summed).
    max_length : texts are cut at this many tokens, [CLS] and [SEP] included.
    on_step : `on_step(done, total)` after each text (forward-only methods), for progress bars.
    **options : the method's options, as in `ll.methods()` (steps, samples, tol, seed, batch_size...).
    """
    method = check_text_method(method)
    check_text_options(options)
    if level not in LEVELS:
        raise BadOption(f"level={level!r}", "use 'token' (word pieces) or 'word' (pieces summed per word)")
    if positive_int("max_length", max_length, "use the model's longest input, e.g. 512") < 3:
        raise BadOption(f"max_length={max_length} leaves no room for a token", "use at least 3: [CLS], a token, [SEP]")
    texts = checked_texts(texts)
    targets = Targets(target, len(texts))  # its kind and length, before the model loads or runs
    adapted = text_model(model, tokenizer)
    with adapted.evaluating():
        batch = encode(adapted.tokenizer, texts, max_length)
        with torch.no_grad():
            scores = adapted.scores(batch.ids, batch.mask).float().cpu()
        chosen = targets.pick(scores).numpy()
        values, extra = _attributions(adapted, batch, method, chosen, options, on_step)
    if level == "word":
        values, extra = _by_word(values, extra, batch)
    tokens = batch.word_texts if level == "word" else batch.tokens
    return TokenExplanation(values=_padded(values), method=method, target=chosen, predictions=scores.numpy(),
                            options={**options, "level": level}, texts=tuple(texts), tokens=tokens, level=level,
                            **_padded_error(extra))


def _attributions(adapted, batch: Encoded, method, target, options, on_step):
    """Each text's values over its players (a list of 1-D arrays), and the per-text extras."""
    if method == "ig":
        grid, result = embedding_ig(adapted, batch, target, options)
        values = [grid[i, batch.positions(i).numpy()].astype(np.float64) for i in range(len(batch))]
        return values, {"delta": result.delta, "error": result.error}
    results = []
    for i in range(len(batch)):
        results.append(forward_only(adapted, batch, i, method, int(target[i]), options))
        if on_step is not None:
            on_step(i + 1, len(batch))
    return [r.values[0].astype(np.float64) for r in results], _joined_extras(results)


def _joined_extras(results) -> dict:
    """delta, score, base_values and error of one-text explanations, as one batch's."""
    extra = {}
    for name in ("delta", "score", "base_values"):
        if all(getattr(r, name) is not None for r in results):
            extra[name] = np.concatenate([getattr(r, name) for r in results])
    errors = [r.error for r in results]
    if all(e is not None for e in errors):
        per_value = errors[0].values.ndim > 1  # KernelSHAP: one standard error a token
        values = [e.values[0] for e in errors] if per_value else np.concatenate([e.values for e in errors])
        extra["error"] = NumericalError(errors[0].kind, values, _joined(e.gap for e in errors), errors[0].tol,
                                        _joined(e.evaluations for e in errors), _joined(e.change for e in errors))
    return extra


def _joined(parts):
    parts = list(parts)
    return None if any(p is None for p in parts) else np.concatenate(parts)


def _by_word(values: list[np.ndarray], extra: dict, batch: Encoded):
    """Token values summed per word; a standard error a token becomes the sum of its word's
    (an upper bound: the standard deviation of a sum is at most the sum of theirs)."""
    summed = [sum_by_word(v, words) for v, words in zip(values, batch.words)]
    error = extra.get("error")
    if error is not None and isinstance(error.values, list):
        bounds = [sum_by_word(v, words) for v, words in zip(error.values, batch.words)]
        extra = {**extra, "error": dataclasses.replace(error, values=bounds)}
    return summed, extra


def _padded(rows: list[np.ndarray]) -> np.ndarray:
    """Ragged rows as (N, longest) float32, zeros after each row's end."""
    out = np.zeros((len(rows), max(len(r) for r in rows)), dtype=np.float32)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def _padded_error(extra: dict) -> dict:
    """Per-value standard errors padded like the values (NumericalError keeps arrays)."""
    error = extra.get("error")
    if error is not None and isinstance(error.values, list):
        return {**extra, "error": dataclasses.replace(error, values=_padded(error.values).astype(np.float64))}
    return extra
