"""Kernel SHAP: leanlens against shap.KernelExplainer at equal samples, time and error.

    .venv/bin/python benchmarks/kernelshap.py

Both are scored by the mean absolute error against exact Shapley values (all 2^d
coalitions, d <= 16). shap runs with l1_reg=False (its plain estimator; its default
num_features(10) would zero out features when d > 10). Both evaluate the model on the
same number of coalitions, so when the forward pass dominates (the image case) the
speed-up shrinks towards 1; leanlens' gain is in batching and in the solve. Prints a
Markdown table; no test depends on these timings.
"""

from __future__ import annotations

import os
import platform
import time
import warnings

import numpy as np
import shap
import torch
from torch import nn

import leanlens as ll
from leanlens.models import SmallResNet

SEEDS = (0, 1, 2)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def shap_values(f, x, background, nsamples, seed):
    np.random.seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return shap.KernelExplainer(f, background).shap_values(x, nsamples=nsamples, silent=True, l1_reg=False)


def compare(name, ours_fn, shap_fn, exact, samples):
    """Median time and mean MAE over seeds, for both; ours is warmed up once."""
    ours_fn(samples, 0)
    ours, theirs = [timed(lambda s=s: ours_fn(samples, s)) for s in SEEDS], [timed(lambda s=s: shap_fn(samples, s)) for s in SEEDS]
    mae = [np.mean([np.abs(v - exact).mean() for v, _ in runs]) for runs in (ours, theirs)]
    secs = [float(np.median([t for _, t in runs])) for runs in (ours, theirs)]
    return (name, samples, secs[0] * 1e3, secs[1] * 1e3, secs[1] / secs[0], mae[0], mae[1])


def tabular_rows():
    torch.manual_seed(0)
    d, n = 10, 32
    net = nn.Sequential(nn.Linear(d, 64), nn.Tanh(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3)).eval()
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(1)).numpy()
    exact = ll.explain(net, x, "shapley", target=0).values

    def f(rows):
        with torch.no_grad():
            return net(torch.as_tensor(rows, dtype=torch.float32)).double().numpy()[:, 0]

    ours = lambda k, s: ll.explain(net, x, "kernelshap", target=0, samples=k, seed=s).values
    theirs = lambda k, s: shap_values(f, x.astype(np.float64), np.zeros((1, d)), k, s)
    return [compare(f"MLP, {n}×{d} features", ours, theirs, exact, k) for k in (256, 512)]


def image_rows():
    torch.manual_seed(0)
    model = SmallResNet(width=8).eval()
    n, cell = 4, 8
    x = torch.randn(n, 1, 32, 32, generator=torch.Generator().manual_seed(2)).numpy()
    cells = np.arange(16).reshape(4, 4).repeat(cell, 0).repeat(cell, 1)  # 16 superpixels
    exact = ll.explain(model, x, "shapley", target=1, superpixel=cell).values
    exact = exact[:, 0, ::cell, ::cell].reshape(n, 16)

    def per_sample(k, s):  # shap's image recipe: one explainer a sample over superpixel indicators
        out = []
        for i in range(n):
            def f(z, i=i):
                keep = z[:, cells].astype(bool)[:, None]
                with torch.no_grad():
                    return model(torch.as_tensor(np.where(keep, x[i], 0), dtype=torch.float32)).double().numpy()[:, 1]
            out.append(shap_values(f, np.ones((1, 16)), np.zeros((1, 16)), k, s + 100 * i)[0])
        return np.stack(out)

    def ours(k, s):
        values = ll.explain(model, x, "kernelshap", target=1, superpixel=cell, samples=k, seed=s).values
        return values[:, 0, ::cell, ::cell].reshape(n, 16)

    return [compare(f"SmallResNet(8), {n}×1×32×32, 16 superpixels", ours, per_sample, exact, k) for k in (256, 1024)]


def main() -> None:
    torch.set_num_threads(2)
    rows = tabular_rows() + image_rows()
    print("| case | samples | leanlens ms | shap ms | speed-up | leanlens MAE | shap MAE |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, k, ours, theirs, ratio, mae_ours, mae_shap in rows:
        print(f"| {name} | {k} | {ours:.1f} | {theirs:.1f} | {ratio:.1f}× | {mae_ours:.2e} | {mae_shap:.2e} |")
    print(f"\nMAE: mean |value - exact Shapley| over samples and features, averaged over seeds {SEEDS}; "
          "time: median over those seeds.")
    print(f"torch {torch.__version__}, shap {shap.__version__}, numpy {np.__version__}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
