"""Which part of a model's output holds the class scores.

Many models return more than a tensor: a tuple (logits, features), a dict, or a
Hugging Face `ModelOutput` with `.logits`. leanlens explains the logits they hold, and
`output=` names another part: a key or attribute name, a position, or a callable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from leanlens.errors import BadInput, BadOption

OutputChoice = str | int | Callable[[Any], torch.Tensor] | None
HINT = "pass ll.wrap(model, output=...) with the key, attribute, index or a function that gives the scores"


def check_choice(choice: OutputChoice) -> OutputChoice:
    """The `output=` option, refused at wrap time when it cannot name a part of an output."""
    if choice is None or callable(choice) or isinstance(choice, str):
        return choice
    if isinstance(choice, int) and not isinstance(choice, bool):
        return choice
    raise BadOption(f"output={choice!r}", "use a key or attribute name, an index, or a function")


def select_scores(output, choice: OutputChoice) -> torch.Tensor:
    """The scores tensor inside `output`: `choice`, else the tensor itself, a sequence's first
    tensor, or the "logits" entry or attribute."""
    scores = _chosen(output, choice) if choice is not None else _default(output)
    if not isinstance(scores, torch.Tensor):
        what = f"output={choice!r} gives" if choice is not None else "the model returns"
        raise BadInput(f"{what} a {type(scores).__name__}, not a tensor of scores", HINT)
    return scores


def _default(output):
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):  # a Hugging Face ModelOutput is a mapping as well
        return output.get("logits", output)
    if isinstance(output, (tuple, list)):
        return next((part for part in output if isinstance(part, torch.Tensor)), output)
    return getattr(output, "logits", output)


def _chosen(output, choice):
    if callable(choice):
        return choice(output)
    try:
        if isinstance(choice, int):
            return output[choice]
        return output[choice] if isinstance(output, Mapping) else getattr(output, choice)
    except (KeyError, IndexError, AttributeError, TypeError):
        raise BadInput(f"output={choice!r} names nothing in the model's {type(output).__name__}",
                       _parts(output)) from None


def _parts(output) -> str:
    if isinstance(output, Mapping):
        return "its keys are " + ", ".join(repr(k) for k in output)
    if isinstance(output, (tuple, list)):
        return f"use an index below {len(output)}"
    return HINT
