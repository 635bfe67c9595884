"""The errors leanlens raises for user mistakes: one line, the problem and a hint.

Each error is also the builtin a caller would expect (``ValueError`` for bad values,
``TypeError`` for the wrong kind of thing), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LeanlensError(Exception):
    """Base of every error leanlens raises on purpose."""

    def __init__(self, problem: str, hint: str = ""):
        self.problem = problem
        self.hint = hint
        super().__init__(f"{problem} (hint: {hint})" if hint else problem)

    def __reduce__(self):
        # problem and hint survive pickling: an error raised in a Ray worker reads the same here
        return type(self), (self.problem, self.hint)


class BadInput(LeanlensError, ValueError):
    """The data handed in has the wrong rank, dtype, values or size."""


class BadOption(LeanlensError, TypeError):
    """A keyword option is unknown or has a value the method cannot use."""


class UnknownMethod(LeanlensError, ValueError):
    """A method, criterion, scheme or dataset name is not registered."""


class MissingCapability(LeanlensError, TypeError):
    """The model cannot do what the method needs (gradients, a spatial layer)."""


class UnsafeFile(LeanlensError, ValueError):
    """Loading this file would run code from it; refused unless trusted."""


def closest(name: str, choices: Iterable[str]) -> str:
    """A 'did you mean' hint listing the nearest known names."""
    choices = sorted(choices)
    near = difflib.get_close_matches(name, choices, n=2, cutoff=0.5)
    if near:
        return "did you mean " + " or ".join(repr(n) for n in near) + "?"
    return "choose one of " + ", ".join(repr(c) for c in choices)
