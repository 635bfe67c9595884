"""`explaining_cost()`: what serving an explanation with every prediction costs.

A deployment that explains each decision runs `explain()` where it ran `predict()`. The
explanation's `predictions` are the served answer, so the cost is the time of one
`explain()` call against one plain forward of the same batch, timed in turns in one run
with the same threads. Post-hoc methods only read the model: the served predictions, and
so the accuracy, are the plain forward's. Compressing a model to pay for explaining it is
another matter; that is what `audit()` measures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from leanlens.audit.timing import BURST, Clock, Timing, interleaved, torch_threads
from leanlens.data import Dataset, as_dataset
from leanlens.errors import BadOption, UnknownMethod
from leanlens.explain import Explanation, explain
from leanlens.explain.checks import require
from leanlens.explain.registry import lookup
from leanlens.models.wrap import wrap

FORWARD, EXPLAINED = "forward", "explained"
HEADER = ("| method | batch | forward ms (median / min) | with explanation ms (median / min) | overhead | accuracy "
          "| change, points |")
MIN_ROUNDS = 3  # fewer rounds than this and the median is one unlucky run


@dataclass(frozen=True)
class ExplainingCost:
    """One method at one batch size: a plain forward against a forward that also explains."""

    method: str
    batch: int
    forward: Timing  # model.predict on the batch
    explained: Timing  # explain() on the same batch: predictions and explanation together
    rounds: int  # interleaved rounds the timings are over
    accuracy: float  # of the plain forward's predictions
    explained_accuracy: float  # of the predictions served with the explanation, same samples

    @property
    def overhead(self) -> float:
        """How many times a plain forward serving with the explanation takes (medians)."""
        return self.explained.median_ms / self.forward.median_ms

    @property
    def overhead_percent(self) -> float:
        return 100.0 * (self.overhead - 1.0)

    @property
    def accuracy_change(self) -> float:
        """Accuracy points gained (negative: lost) by serving with the explanation."""
        return 100.0 * (self.explained_accuracy - self.accuracy)


@dataclass(frozen=True)
class ExplainingCosts:
    """The rows of `explaining_cost()`, method by method, each at every batch size."""

    rows: list[ExplainingCost]
    threads: int  # intra-op threads of every timed call
    accuracy_samples: int  # the first samples of the data that the accuracies are measured on
    options: dict[str, dict]  # the options each method was explained with

    def row(self, method: str, batch: int) -> ExplainingCost:
        return next(r for r in self.rows if (r.method, r.batch) == (method, batch))

    def to_markdown(self) -> str:
        """A GitHub table: forward and explained latency (median / min), overhead, accuracy."""
        lines = [HEADER, "|---|---:|---:|---:|---:|---:|---:|"]
        for r in self.rows:
            lines.append(f"| {self._label(r.method)} | {r.batch} | {_ms(r.forward)} | {_ms(r.explained)} | "
                         f"{r.overhead:.2f}× ({r.overhead_percent:+.0f} %) | {100 * r.accuracy:.1f} % | "
                         f"{r.accuracy_change:+.1f} |")
        lines.append(f"\n{self.threads} intra-op thread(s); medians and minima over interleaved rounds "
                     f"(forward, explained, forward, ...); accuracy on the first {self.accuracy_samples} samples.")
        return "\n".join(lines)

    def _label(self, method: str) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.get(method, {}).items())
        return f"{method} ({options})" if options else method


def _ms(t: Timing) -> str:
    return f"{t.median_ms:.2f} / {t.min_ms:.2f}"


def _check_batches(batch_sizes: Sequence[int], n: int) -> tuple[int, ...]:
    batches = tuple(batch_sizes) if isinstance(batch_sizes, Sequence) else (batch_sizes,)
    for b in batches:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise BadOption(f"batch size {b!r}", "pass positive whole numbers, e.g. batch_sizes=(1, 64)")
        if b > n:
            raise BadOption(f"batch size {b} is more than the {n} samples given",
                            f"pass at least {b} samples or a batch size up to {n}")
    if not batches:
        raise BadOption("batch_sizes is empty", "pass e.g. batch_sizes=(1, 64)")
    return tuple(int(b) for b in batches)


def _check_rounds(repeats, warmup, budget_s) -> None:
    for name, value, least in (("repeats", repeats, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise BadOption(f"{name}={value!r}", f"pass a whole number of rounds, at least {least}")
    if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)) or not budget_s >= 0:
        raise BadOption(f"budget_s={budget_s!r}", "pass the seconds a method may take, e.g. budget_s=60")


def _check_methods(model, methods: Sequence[str], options: Mapping[str, dict]) -> tuple[str, ...]:
    """Every method known and able to explain this model, before any timing."""
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    if not methods:
        raise BadOption("methods is empty", "pass e.g. methods=('saliency', 'gradcam++')")
    for m in methods:
        require(model, lookup(m).needs, m)
    if stray := sorted(set(options) - set(methods)):
        raise UnknownMethod(f"options given for {stray[0]!r}, which is not among the methods {methods}",
                            "add it to methods= or drop its options")
    return methods


class _Served:
    """The explained contender: one `explain()` call, keeping its result for the accuracy."""

    def __init__(self, model, x: np.ndarray, method: str, options: dict):
        self.model, self.x, self.method, self.options = model, x, method, options
        self.last: Explanation | None = None

    def __call__(self) -> None:
        self.last = explain(self.model, self.x, method=self.method, **self.options)


@dataclass(frozen=True)
class _Plan:
    rounds: int
    warmup: int
    burst: int  # calls a turn (see `timing.BURST`)


def _plan(call: Callable[[], object], clock: Clock, repeats: int, warmup: int, budget_s: float) -> _Plan:
    """Up to `repeats` rounds, fewer when one call is so slow that they would run past `budget_s`.

    The call made here to estimate its time is a warm-up. A call too slow for the budget is
    made once a turn and gets no further warm-up: what a burst absorbs (the threads a
    predecessor left spinning) is milliseconds, and its first run is already behind it.
    """
    start = clock()
    call()
    seconds = max(clock() - start, 1e-9)
    if seconds * BURST * (repeats + warmup) <= budget_s:
        return _Plan(repeats, warmup, BURST)
    return _Plan(max(MIN_ROUNDS, min(repeats, int(budget_s / seconds))), 0, 1)


def explaining_cost(
    model, data, methods: Sequence[str] = ("saliency", "gradcam++", "ig"), *, batch_sizes: Sequence[int] = (1, 64),
    options: Mapping[str, dict] | None = None, threads: int | None = None, repeats: int = 15, warmup: int = 1,
    budget_s: float = 60.0, clock: Clock | None = None, on_step: Callable[[int, int], None] | None = None,
) -> ExplainingCosts:
    """Latency and accuracy of serving each prediction with its explanation, per method and batch size.

    The accuracy change is zero for post-hoc methods, which every method of `ll.methods()` is:
    they read the model (eval mode, frozen weights, hooks removed after) and never train it,
    so the predictions served with an explanation are the plain forward's. Both accuracies are
    measured here anyway, on the same samples, so a method that broke this would show it.

    Parameters
    ----------
    model : anything `ll.wrap` takes.
    data : a Dataset, (x, y) tuple or DataLoader; the batches are its first samples.
    methods : attribution methods, names from `ll.methods()`.
    batch_sizes : samples a call serves; each needs that many samples in `data`.
    options : a method's keyword options, e.g. {"kernelshap": {"superpixel": 8}}.
    threads : intra-op threads of torch for every timed call (default: torch's current count).
    repeats : interleaved rounds of forward and explained call, at most.
    warmup : rounds run before the timed ones.
    budget_s : seconds a method may take at one batch size; a slow one gets fewer rounds (at least 3),
        one call a turn and no warm-up round.
    clock : seconds as a monotonic float (tests inject a fake one).
    on_step : called as on_step(done, total) after each method at each batch size.
    """
    model, data = wrap(model), as_dataset(data)
    options = {m: dict(o) for m, o in (options or {}).items()}
    methods = _check_methods(model, methods, options)
    batches = _check_batches(batch_sizes, len(data))
    _check_rounds(repeats, warmup, budget_s)
    threads = threads or torch.get_num_threads()
    clock, step = clock or time.perf_counter, _counter(on_step, len(methods) * len(batches))
    sample = data.subset(np.arange(max(batches)))
    rows = []
    with torch_threads(threads):
        plain = _accuracy(model.predict(sample.x, batch_size=len(sample)), sample)
        for m in methods:
            served = {b: _Served(model, data.x[:b], m, options.get(m, {})) for b in batches}
            timed = {b: step(_timed(model, served[b], repeats, warmup, budget_s, clock)) for b in batches}
            # the largest batch is the accuracy samples: its last call's predictions are the served answer
            explained = _accuracy(served[max(batches)].last.predictions, sample)
            rows += [ExplainingCost(m, b, *timed[b], accuracy=plain, explained_accuracy=explained) for b in batches]
    return ExplainingCosts(rows, threads, len(sample), {m: options.get(m, {}) for m in methods})


def _timed(model, served: _Served, repeats: int, warmup: int, budget_s: float,
           clock: Clock) -> tuple[Timing, Timing, int]:
    """(forward, explained, rounds): the two calls on the same batch, in turns."""
    plan = _plan(served, clock, repeats, warmup, budget_s)
    device = getattr(model, "device", None)
    sync = torch.cuda.synchronize if device is not None and device.type == "cuda" else None
    x = served.x
    timed = interleaved({FORWARD: lambda: model.predict(x, batch_size=len(x)), EXPLAINED: served},
                        repeats=plan.rounds, warmup=plan.warmup, burst=plan.burst, clock=clock, sync=sync)
    return timed[FORWARD], timed[EXPLAINED], plan.rounds


def _counter(on_step: Callable[[int, int], None] | None, total: int):
    """A pass-through that reports one more step done each time it is called."""
    done = 0

    def step(value):
        nonlocal done
        done += 1
        if on_step is not None:
            on_step(done, total)
        return value

    return step


def _accuracy(scores: np.ndarray, data: Dataset) -> float:
    return float(np.mean(np.asarray(scores).argmax(-1) == data.y))
