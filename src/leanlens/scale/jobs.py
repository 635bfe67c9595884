"""`ll.explain` and `ll.reasons` over Ray: the same call on every shard, the results joined in order.

Equal to the single-process run by construction: every method explains each sample on its
own (a sample's result never depends on the others in its batch), random draws come from
per-sample streams keyed by the seed and the sample (`leanlens.explain.streams`), and what
the single-process run derives from the whole batch (the background rows KernelSHAP reason
codes take from the data) is derived here once, from the whole batch, and sent to every shard.
KernelSHAP with `tol=` too: each sample stops on its own, at the design size its own standard
errors ask for, with the coalitions it would draw alone.
"""

from __future__ import annotations

import numpy as np

from leanlens.scale import shards as sharding
from leanlens.scale.engine import cluster, cpus, ray_engine, run_shards
from leanlens.scale.shipping import pack, unpack


def explain_on_ray(engine, model, x, method: str, target=None, *, autocast: bool = False, **options):
    """`ll.explain(model, x, method, target, **options)` computed in shards on Ray (see the module docstring)."""
    from leanlens.explain.checks import bind_options, require
    from leanlens.explain.registry import lookup
    from leanlens.models.wrap import wrap

    settings = ray_engine(engine)
    # the checks the single-process run makes first, made here before any cluster starts
    require(wrap(model), lookup(method).needs, method)
    bind_options(lookup(method).fn, options, method)
    x = sharding.as_rows(x)
    parcel = pack(model)
    with cluster(settings) as ray:
        cut = sharding.plan(len(x), settings.shard_size, cpus(ray))
        shard_arguments = [{"x": sharding.rows_of(x, rows), "target": sharding.sample_target(target, len(x), rows),
                            "options": sharding.sample_options(options, np.shape(x), rows)} for rows in cut]
        parts = run_shards(ray, _explain_shard, {"parcel": parcel, "method": method, "autocast": autocast},
                           shard_arguments, [r.stop - r.start for r in cut], settings.on_progress)
    joined = sharding.join(parts)
    whole = {name: options[name] for name in sharding.PER_SAMPLE_OPTIONS if name in options}
    return _with_options(joined, {**joined.options, **whole})


def reasons_on_ray(engine, model, x, *, top: int, background, samples, seed: int, on_progress=None):
    """`ll.reasons(model, x, ...)` computed in shards on Ray (see the module docstring)."""
    settings = ray_engine(engine)
    x = sharding.as_rows(x)
    if background is None and not _walks_trees(model, x):
        background = _default_background(x, seed)  # the rows the single-process run would take
    parcel = pack(model)
    with cluster(settings) as ray:
        cut = sharding.plan(len(x), settings.shard_size, cpus(ray))
        parts = run_shards(ray, _reasons_shard,
                           {"parcel": parcel, "top": top, "background": background, "samples": samples, "seed": seed},
                           [{"x": sharding.rows_of(x, rows)} for rows in cut], [r.stop - r.start for r in cut],
                           on_progress or settings.on_progress)
    return sharding.join(parts)


def _explain_shard(parcel, x, target, options, method, autocast):
    from leanlens.explain.api import explain

    return explain(unpack(parcel), x, method, target, autocast=autocast, **options)


def _reasons_shard(parcel, x, top, background, samples, seed):
    from leanlens.insight.reasons import reasons

    return reasons(unpack(parcel), x, top=top, background=background, samples=samples, seed=seed)


def _walks_trees(model, x) -> bool:
    """Whether reason codes for `x` come from exact TreeSHAP (decided on its first rows: it depends on the columns)."""
    from leanlens.insight.reasons import walks_trees
    from leanlens.insight.scorer import prepare

    scorer, table, _ = prepare(model, sharding.rows_of(x, slice(0, 2)))
    return walks_trees(scorer, table)


def _default_background(x, seed: int):
    from leanlens.insight.kernel import background_indices

    return sharding.rows_of(x, background_indices(len(x), seed=seed))


def _with_options(explanation, options: dict):
    import dataclasses

    return dataclasses.replace(explanation, options=options)
