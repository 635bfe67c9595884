"""The Ray engine: its settings, the cluster it runs on, and running one task a shard.

Which cluster: the one this process is already connected to (`ray.init()` called by the
user), else the one at `address=` or `RAY_ADDRESS`, else a local one started here with
`num_cpus` CPUs. A cluster or connection started here is shut down when the work is done;
one the user started is left as it was. Starting a local cluster takes seconds: a user
who explains many batches calls `ray.init()` once and every call reuses it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from leanlens.errors import BadInput, BadOption, LeanlensError, MissingCapability


@dataclass(frozen=True)
class Ray:
    """Run an explanation in shards on a Ray cluster: `ll.explain(..., engine=Ray(...))`.

    address : a cluster to connect to ("auto", "ray://host:10001", ...); None: `RAY_ADDRESS`,
        else a local cluster started for this call.
    num_cpus : the CPUs of a local cluster started here (None: all of this machine's).
    shard_size : rows a task; None: about four shards a CPU of the cluster.
    on_progress : called with (rows done, rows) each time a shard comes back.
    """

    address: str | None = None
    num_cpus: int | None = None
    shard_size: int | None = None
    on_progress: Callable[[int, int], None] | None = None

    def __post_init__(self):  # refused here, before a cluster starts
        for name in ("num_cpus", "shard_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise BadOption(f"{name}={value!r}", "pass a positive int, or None for the default")


ENGINES = "engine=None (this process), 'ray', or leanlens.scale.Ray(address=...)"


def ray_engine(engine) -> Ray:
    """The settings an `engine=` argument names; an unknown engine, or Ray missing, refused in one line."""
    if isinstance(engine, str) and engine.lower() == "ray":
        engine = Ray()
    if not isinstance(engine, Ray):
        raise BadOption(f"engine={engine!r} is not an engine leanlens knows", f"use {ENGINES}")
    import_ray()  # before any work that would be wasted
    return engine


def import_ray():
    try:
        import ray
    except ImportError:
        raise MissingCapability("engine='ray' needs the ray package, which is not installed",
                                "pip install 'leanlens[ray]'") from None
    return ray


@contextlib.contextmanager
def cluster(settings: Ray) -> Iterator:
    """The `ray` module, connected: to the user's cluster, to `address`/RAY_ADDRESS, or to a local one."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    address = settings.address or os.environ.get("RAY_ADDRESS") or None
    try:
        if address is not None:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=settings.num_cpus, include_dashboard=False, log_to_driver=False)
    except Exception as error:  # noqa: BLE001 - Ray raises connection, timeout and value errors
        from leanlens.models.architecture import first_line

        where = f"the Ray cluster at {address!r}" if address else "a local Ray cluster"
        raise BadInput(f"cannot start or reach {where}: {first_line(error)}",
                       "check address= or RAY_ADDRESS, or unset it to start a local cluster") from None
    try:
        yield ray
    finally:
        ray.shutdown()  # ours to end: a local cluster stops, a connection to a remote one closes


def cpus(ray) -> int:
    return int(ray.cluster_resources().get("CPU", 1))


def run_shards(ray, task: Callable, shared: dict, shards: list[dict], sizes: list[int],
               on_progress: Callable[[int, int], None] | None) -> list:
    """`task(**shared, **shard)` for every shard on the cluster, one CPU each; the results in shard order.

    The shared arguments are put in the object store once (the model's bytes go to each node
    once, not once a shard). A shard's LeanlensError comes back as that one-line error.
    """
    remote = ray.remote(num_cpus=1, max_retries=0)(task)
    shared_refs = {name: ray.put(value) for name, value in shared.items()}
    pending = {remote.remote(**shared_refs, **shard): index for index, shard in enumerate(shards)}
    results, done_rows, total = [None] * len(shards), 0, sum(sizes)
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ready[0])
            results[index] = _result(ray, ready[0])
            done_rows += sizes[index]
            if on_progress is not None:
                on_progress(done_rows, total)
    finally:
        for ref in pending:  # an error or an interrupt: the rest is not wanted
            ray.cancel(ref, force=True)
    return results


def _result(ray, ref):
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        if isinstance(error.cause, LeanlensError):
            raise error.cause from None
        raise
