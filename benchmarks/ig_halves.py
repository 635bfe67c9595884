"""Where IG's integrand steps along the path, and what refining to a tol costs in points (issue 17).

    PYTHONPATH=src .venv/bin/python benchmarks/ig_halves.py [--smoke] [--threads N]

1. The per-feature variation of the attribution integrand, sum over features of
   |(x - b)(g(a_i+1) - g(a_i))|, summed over each eighth of the straight path from a zero
   baseline, averaged over samples: where a ReLU net's steps sit. A digits MLP (trained
   here), the demo CNN (one epoch on the hard lesions) and the ResNet-50 architecture
   (random, with batch-norm statistics; 2×3×112×112). The trapezoid's half levels take the
   busiest cells first because this differs from model to model.
2. On 64 demo-CNN images: for tol 1e-2, 4e-3 and 2e-3 (max_steps=129), the mean points a
   sample, the samples that met tol, and the per-feature error Σ|v − ref| / Σ|ref| against
   a 257-point trapezoid. It uses the public API only, so the same script run with
   PYTHONPATH pointing at an older checkout's src measures "before".

Prints Markdown. Counts, not timings: nothing here depends on the machine's load.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from resnet50 import resnet50
from sklearn.datasets import load_digits
from tolerance import demo_cnn, frozen, with_norm_statistics
from torch import nn

import leanlens as ll

SMOKE = "--smoke" in sys.argv
EIGHTHS = 8


def path_gradients(model, x: torch.Tensor, target: torch.Tensor, points: int) -> torch.Tensor:
    """(x - 0) * grad f at `points` evenly spaced positions of the path from 0, (samples, points, features)."""
    alphas = torch.linspace(0, 1, points, dtype=x.dtype).view(-1, *[1] * x[0].dim())
    out = [ll.attribute(model, alphas * sample, "saliency", target=int(t), absolute=False).flatten(1) * sample.flatten()
           for sample, t in zip(x, target)]
    return torch.stack(out).double()


def variation_by_eighth(model, x: torch.Tensor, points: int) -> list[float]:
    """Σ over features of |jump| between neighbouring points, summed per eighth of the path, as a
    multiple of one point's mean Σ|integrand| (so models compare), averaged over the samples."""
    target = model(x).argmax(1)
    g = path_gradients(model, x, target, points)
    jumps = (g[:, 1:] - g[:, :-1]).abs().sum(2) / g.abs().sum(2).mean(1, keepdim=True)
    return jumps.view(len(x), EIGHTHS, -1).sum(2).mean(0).tolist()


def digits_mlp() -> tuple[nn.Module, torch.Tensor]:
    digits = load_digits()
    x, y = torch.tensor(digits.data / 16, dtype=torch.float32), torch.tensor(digits.target)
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    optimizer = torch.optim.Adam(mlp.parameters(), 1e-3)
    for _ in range(30 if SMOKE else 300):
        optimizer.zero_grad()
        nn.functional.cross_entropy(mlp(x), y).backward()
        optimizer.step()
    return frozen(mlp), x[:32]


def variation_rows(cnn: nn.Module) -> None:
    print("| model | per-feature variation by eighth of the path, baseline → input |")
    print("|---|---|")
    side = 32 if SMOKE else 112
    photos = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    images = torch.as_tensor(ll.data.load("lesions-hard", n=8, seed=1).x)
    cases = [("digits MLP, 32 samples", *digits_mlp(), 257),
             ("demo CNN, 8×1×64×64", cnn, images, 129),
             (f"ResNet-50 architecture, 2×3×{side}×{side}", frozen(with_norm_statistics(resnet50())), photos, 65)]
    for name, model, x, points in cases:
        print(f"| {name} | {' '.join(f'{v:.2f}' for v in variation_by_eighth(model, x, points))} |")


def points_rows(cnn: nn.Module) -> None:
    x = torch.as_tensor(ll.data.load("lesions-hard", n=8 if SMOKE else 64, seed=2).x)
    target = cnn(x).argmax(1).numpy()
    reference = ll.explain(cnn, x, "ig", target=target, steps=257, rule="riemann_trapezoid").values
    reference = reference.reshape(len(x), -1)
    print("\n| tol | points a sample (mean) | samples met | per-feature error, median (mean) |")
    print("|---:|---:|---:|---|")
    for tol in (1e-2, 4e-3, 2e-3):
        got = ll.explain(cnn, x, "ig", target=target, tol=tol, max_steps=129)
        error = np.abs(got.values.reshape(len(x), -1) - reference).sum(1) / np.abs(reference).sum(1)
        print(f"| {tol:g} | {got.error.evaluations.mean():.1f} | {got.error.met.sum()}/{len(x)} | "
              f"{100 * np.median(error):.1f} % ({100 * error.mean():.1f} %) |")


def main() -> None:
    cnn = frozen(demo_cnn())
    variation_rows(cnn)
    points_rows(cnn)
    print(f"\ntorch {torch.__version__}, threads {torch.get_num_threads()}, leanlens from {ll.__file__}")


if __name__ == "__main__":
    main()
