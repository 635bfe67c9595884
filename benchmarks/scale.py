"""Reason codes for a million rows: one process against Ray, and proof that both give the same codes.

    PYTHONPATH=src .venv/bin/python benchmarks/scale.py            # 1,000,000 rows
    PYTHONPATH=src .venv/bin/python benchmarks/scale.py --smoke    # 20,000 rows, a minute
    RAY_ADDRESS=ray://head:10001 .venv/bin/python benchmarks/scale.py --rows 10000000

A gradient-boosted credit model (scikit-learn, 100 trees of depth 3, fit on 10,000 rows)
explains every row of the synthetic credit set with exact TreeSHAP, top 4 reasons a row:

1. one process, chunk by chunk (`--chunk` rows a call of `ll.reasons`);
2. Ray: on the cluster at RAY_ADDRESS, else a local one with `--cpus` CPUs; the cluster's
   start and a first call that starts its workers are timed apart from the run itself.

Both runs must give identical decisions and reasons and the same contributions (to 1e-9);
the script fails otherwise. Prints a Markdown table of rows a second. On one machine the
two runs share its cores, so Ray can only match one process plus its overheads; on a
cluster the rows a second grow with its CPUs (each shard is independent work).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier

import leanlens as ll
from leanlens.insight import credit_applications
from leanlens.scale import Ray
from leanlens.scale.shards import join


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to explain")
    parser.add_argument("--chunk", type=int, default=50_000, help="rows a call in one process, and a Ray shard")
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of a local Ray cluster")
    parser.add_argument("--smoke", action="store_true", help="20,000 rows: checks the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.chunk = 20_000, 5_000
    return args


def credit_model():
    """The model and the rows to explain (the first 10,000 rows train it, as a lender's history would)."""
    frame = credit_applications(10_000, seed=0).drop(columns="employment")
    model = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0)
    return model.fit(frame.drop(columns="defaulted"), frame["defaulted"])


def one_process(model, rows, chunk: int):
    parts = []
    for start in range(0, len(rows), chunk):
        parts.append(ll.reasons(model, rows.iloc[start : start + chunk]))
        print(f"  one process: {start + len(parts[-1]):,} / {len(rows):,} rows", end="\r", flush=True)
    print()
    return join(parts)


def start_ray(cpus: int) -> tuple[float, str]:
    import ray

    start = time.perf_counter()
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    where = f"cluster at {address}" if address else f"local cluster, {cpus} CPUs"
    return time.perf_counter() - start, f"{where}, {int(ray.cluster_resources().get('CPU', 0))} CPUs in all"


def on_ray(model, rows, chunk: int):
    def report(done: int, total: int) -> None:
        print(f"  Ray: {done:,} / {total:,} rows", end="\r", flush=True)

    codes = ll.reasons(model, rows, engine=Ray(shard_size=chunk, on_progress=report))
    print()
    return codes


def check_equal(ours, theirs) -> None:
    assert np.array_equal(ours.decisions, theirs.decisions), "the decisions differ"
    assert np.array_equal(ours.features, theirs.features), "the reasons differ"
    np.testing.assert_allclose(ours.contributions, theirs.contributions, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours.scores, theirs.scores, rtol=0, atol=1e-12)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    import ray

    args = arguments()
    model = credit_model()
    rows = credit_applications(args.rows, seed=1).drop(columns=["employment", "defaulted"])
    single, single_s = timed(lambda: one_process(model, rows, args.chunk))
    start_s, where = start_ray(args.cpus)
    # a first call of one small shard a CPU, so that every worker has started and read the model
    cpus = int(ray.cluster_resources().get("CPU", 1))
    _, first_s = timed(lambda: ll.reasons(model, rows.iloc[: 100 * cpus], engine=Ray(shard_size=100)))
    scaled, ray_s = timed(lambda: on_ray(model, rows, args.chunk))
    ray.shutdown()
    check_equal(scaled, single)
    print(f"\n{platform.machine()}, {os.cpu_count()} cores; Ray {ray.__version__}; {where}\n")
    print(f"{args.rows:,} rows, chunks/shards of {args.chunk:,} rows, exact TreeSHAP, top 4 reasons: "
          "Ray's codes identical to one process's (decisions, reasons; contributions to 1e-9)\n")
    print("| run | seconds | rows/s |\n|---|---:|---:|")
    print(f"| one process, chunked | {single_s:.1f} | {args.rows / single_s:,.0f} |")
    print(f"| Ray, run (cluster warm) | {ray_s:.1f} | {args.rows / ray_s:,.0f} |")
    print(f"| Ray, cluster start + first call (workers start) | {start_s:.1f} + {first_s:.1f} | — |")


if __name__ == "__main__":
    main()
