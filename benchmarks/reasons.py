"""Reason codes at scale: `leanlens reasons` end to end on 10,000 rows, and TreeSHAP against shap's.

    .venv/bin/python benchmarks/reasons.py

1. The credit demo set (10,000 applicants) as a CSV and a gradient-boosted model (100 trees
   of depth 3) as a .skops file; `leanlens reasons` runs as a user runs it, in a fresh
   process, and its wall time is measured (issue 16's target: under a minute on 2 cores).
2. `leanlens.insight.tree_shap` against `shap.TreeExplainer` on the same 10,000 rows, run in
   turns (ours wraps shap's exact algorithm, so the two should match; the figure shows
   what the wrapping costs).
3. KernelSHAP reasons of a pipeline with a text column (1,000 rows, 20 background rows).
Prints a Markdown table; no test depends on these timings.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import shap
import skops.io as sio
from sklearn.compose import make_column_transformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from timing import interleaved_ms

import leanlens as ll
from leanlens.insight import credit_applications, tree_shap

ROWS = 10_000


def command_seconds(folder: Path) -> float:
    """Wall time of `leanlens reasons` on the CSV, start of the process to its exit."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "leanlens", "reasons", str(folder / "model.skops"),
                    str(folder / "credit.csv"), "--target", "defaulted", "--out", str(folder / "reasons.csv"),
                    "--force"], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    frame = credit_applications(ROWS, seed=0)
    numeric = frame.drop(columns="employment")
    x, y = numeric.drop(columns="defaulted"), numeric["defaulted"]
    model = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0).fit(x, y)
    rows = [("", "seconds")]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        numeric.to_csv(folder / "credit.csv", index=False)
        sio.dump(model, folder / "model.skops")
        rows.append((f"`leanlens reasons` on {ROWS:,} rows, gradient boosting (end to end)",
                     f"{command_seconds(folder):.2f}"))
    explainer = shap.TreeExplainer(model)
    times = interleaved_ms({"ours": lambda: tree_shap(model, x), "shap": lambda: explainer(x.to_numpy())},
                           repeats=5, warmup=1)
    rows.append((f"TreeSHAP on {ROWS:,} rows: leanlens.insight.tree_shap", f"{times['ours'] / 1e3:.2f}"))
    rows.append((f"TreeSHAP on {ROWS:,} rows: shap.TreeExplainer", f"{times['shap'] / 1e3:.2f}"))
    pipe = make_pipeline(make_column_transformer((OneHotEncoder(), ["employment"]), remainder=StandardScaler()),
                         LogisticRegression(max_iter=1000)).fit(frame.drop(columns="defaulted"), frame["defaulted"])
    start = time.perf_counter()
    ll.reasons(pipe, frame.drop(columns="defaulted").iloc[:1000])
    rows.append(("KernelSHAP reasons, pipeline with a text column, 1,000 rows x 20 background",
                 f"{time.perf_counter() - start:.2f}"))
    print(f"cores: {os.cpu_count()}, {np.__name__} {np.__version__}\n")
    print("| what | seconds |\n|---|---:|")
    for name, seconds in rows[1:]:
        print(f"| {name} | {seconds} |")


if __name__ == "__main__":
    main()
