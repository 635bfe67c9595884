"""Checks for method options: each bad value becomes one BadOption naming the option and the fix."""

from __future__ import annotations

import math
import numbers

import torch

from leanlens.errors import BadOption


def positive_int(name: str, value, hint: str) -> int:
    """`value` as an int (NumPy ints too), or BadOption naming the option."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise BadOption(f"{name}={value!r}", hint)
    return int(value)


def chunk_size(batch_size, n: int) -> int:
    """Model inputs per pass: `batch_size`, or everything at once when it is None."""
    if batch_size is None:
        return max(n, 1)
    return positive_int("batch_size", batch_size, "use a positive int (model inputs per pass) or None")


def flag(name: str, value) -> bool:
    """A true bool: 1, 'no' and None are refused rather than read as True or False."""
    if not isinstance(value, bool):
        raise BadOption(f"{name}={value!r}", "pass True or False")
    return value


def real(name: str, value, hint: str, *, low: float = -math.inf, strict: bool = False) -> float:
    """A finite real number >= `low` (> `low` when `strict`)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value < low or (strict and value == low):
        raise BadOption(f"{name}={value!r}", hint)
    return float(value)


def generator(seed, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator of its own, seeded: the global RNG is never touched, and a seed repeats exactly."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise BadOption(f"seed={seed!r}", "use an int >= 0")
    return torch.Generator(device=device).manual_seed(int(seed))
