"""Time leanlens' attributions against Captum and against the floor, in one run.

    .venv/bin/python benchmarks/attributions.py

Prints a Markdown table of medians and ratios (no test depends on these timings).
"""

from __future__ import annotations

import platform
import time

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerGradCam

import leanlens as ll
from leanlens.models import SmallResNet


def median_ms(fn, repeats: int = 7, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def ig_floor(model, x, target, steps, chunk):
    """One forward+backward to the input over all (sample, step) points, in the same chunks."""
    points = x.repeat_interleave(steps, 0)
    targets = target.repeat_interleave(steps, 0)
    for start in range(0, len(points), chunk):
        p = points[start : start + chunk].clone().requires_grad_(True)
        score = model(p).gather(1, targets[start : start + chunk, None]).sum()
        torch.autograd.grad(score, p)


def main() -> None:
    torch.manual_seed(0)
    model = SmallResNet(width=32).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x_np = ll.data.load("lesions", n=32, seed=0).x
    rows = []

    x8, steps = torch.as_tensor(x_np[:8]), 50
    target8 = torch.as_tensor(model(x8).argmax(1))
    ours = median_ms(lambda: ll.explain(model, x_np[:8], "ig", target=target8.numpy(), steps=steps, batch_size=128))
    captum = median_ms(lambda: IntegratedGradients(model).attribute(x8, target=target8, n_steps=steps, internal_batch_size=128))
    floor = median_ms(lambda: ig_floor(model, x8, target8, steps, 128))
    rows.append(("IG, 50 steps, 8×1×64×64", ours, captum, floor, "fwd+bwd floor"))

    x32 = torch.as_tensor(x_np)
    target32 = model(x32).argmax(1)
    with torch.no_grad():
        forward = median_ms(lambda: model(x32))
    ours = median_ms(lambda: ll.explain(model, x_np, "gradcam++", target=target32.numpy(), layer="stage3.relu2"))
    captum = median_ms(lambda: LayerGradCam(model, model.stage3.relu2).attribute(x32, target=target32))
    rows.append(("Grad-CAM++ (captum: Grad-CAM), 32×1×64×64", ours, captum, forward, "plain forward"))

    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads\n")
    print("| work | leanlens ms | Captum ms | reference ms | reference | Captum / leanlens | leanlens / reference |")
    print("|---|---|---|---|---|---|---|")
    for work, ours, captum, ref, ref_name in rows:
        print(f"| {work} | {ours:.1f} | {captum:.1f} | {ref:.1f} | {ref_name} | {captum / ours:.2f} | {ours / ref:.2f} |")


if __name__ == "__main__":
    main()
