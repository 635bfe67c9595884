"""Oracles and small models shared by the insight tests: brute-force Shapley values and credit data."""

import itertools
import math

import numpy as np


def interventional_shapley(f, x: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Exact Shapley values (N, d) of f(rows) -> (rows,) by enumerating every coalition.

    A coalition's payoff is the mean over the background rows of f with the coalition's
    features taken from x and the others from the background row.
    """
    n, d = x.shape
    values = np.zeros((n, d))
    for i in range(n):
        payoff = {}
        for size in range(d + 1):
            for coalition in itertools.combinations(range(d), size):
                rows = background.copy()
                rows[:, list(coalition)] = x[i, list(coalition)]
                payoff[coalition] = f(rows).mean()
        for j in range(d):
            others = [k for k in range(d) if k != j]
            for size in range(d):
                weight = math.factorial(size) * math.factorial(d - size - 1) / math.factorial(d)
                for coalition in itertools.combinations(others, size):
                    with_j = tuple(sorted(coalition + (j,)))
                    values[i, j] += weight * (payoff[with_j] - payoff[coalition])
    return values
