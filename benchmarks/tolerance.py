"""Attributions to a stated accuracy (issue 17): speed at equal error, and memory within a budget.

    .venv/bin/python benchmarks/tolerance.py [--smoke] [--no-resnet-ig] [--kernelshap-only | --ig-only] [--threads N]
        [--resnet-images N] [--resnet-side PIXELS]

1. IG: Captum's default call (50 Gauss–Legendre steps, all points at once) sets the error
   to reach: its largest per-sample relative completeness error |delta| / |f(x) - f(b)|
   on the batch. leanlens' `tol=` that error is timed against it, interleaved, on the demo
   CNN (trained one epoch), the same CNN with SiLU for ReLU (smooth), and the ResNet-50
   architecture, by default and with `fold_bn=True`. The points each nested rule needs say
   which rule is cheapest (the default, 'auto', picks one from the model's graph). Each
   sample's per-feature error against a 257-point reference shows what completeness hides.
2. KernelSHAP: 60 features in 12 groups of 5, each group a small tanh MLP (interactions of
   every order within a group), so exact Shapley values come from brute force inside each
   group. leanlens `tol=` against shap.KernelExplainer given the samples it needs to reach
   the same error, measured two ways: on every sample relative to its gap (the worst sample's
   MAE / |f(x) - f(b)|, what `tol` promises and what the IG rows reach), and as the MAE over all
   values; and, at equal evaluations, the kernel and leverage samplers and shap.
3. Memory: IG with 300 steps on the ResNet-50 architecture at 224×224 within `memory=`,
   its peak RSS (CPU) or peak allocated memory (GPU).

`--smoke` shrinks every case (64×64 ResNet-50, fewer images and samples) to check the script
runs; its figures are not the results. `--kernelshap-only` runs part 2 alone, `--ig-only` part 1; `--threads N` sets
torch's threads for every peer alike. The ResNet-50 IG row takes 4 images of 224×224 unless told
(`--resnet-images 2 --resnet-side 112` fits a 2-core CPU in minutes). Prints Markdown; no test depends on these timings.
"""

from __future__ import annotations

import copy
import ctypes
import platform
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from captum.attr import IntegratedGradients
from resnet50 import resnet50
from threadpoolctl import threadpool_limits
from timing import interleaved_median_min_ms, interleaved_ms
from torch import nn

import leanlens as ll
from leanlens.compression import finetune
from leanlens.models import SmallResNet

SMOKE = "--smoke" in sys.argv
# the ResNet-50 IG row takes most of an hour on 2 CPU cores (4 images, three rules, interleaved rounds)
SKIP_RESNET_IG = "--no-resnet-ig" in sys.argv
KERNELSHAP_ONLY = "--kernelshap-only" in sys.argv
IG_ONLY = "--ig-only" in sys.argv


def option(name: str, default: int) -> int:
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


if "--threads" in sys.argv:
    torch.set_num_threads(option("--threads", 0))
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


# 1. IG at Captum's error ------------------------------------------------------------------

def demo_cnn() -> nn.Module:
    """The demo's CNN after one epoch on the hard lesions (fewer images under --smoke)."""
    torch.manual_seed(0)
    data = ll.data.load("lesions-hard", n=64 if SMOKE else 2000, seed=0)
    return finetune(SmallResNet(width=32), data, epochs=1.0, lr=3e-3, seed=0).module


def smooth_copy(model: nn.Module) -> nn.Module:
    """The same weights with every ReLU a SiLU: an integrand without kinks."""
    for name, child in list(model.named_modules()):
        if isinstance(child, nn.ReLU):
            parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
            setattr(parent, name.rpartition(".")[2], nn.SiLU())
    return model


def with_norm_statistics(model: nn.Module) -> nn.Module:
    """Batch norms with the shifts and statistics training leaves (random here, seeded). Freshly made,
    a ResNet has none: bias-free convs and identity norms make it positively homogeneous, f(a x) = a f(x)
    along the path from 0, which two points integrate exactly: no test of a rule."""
    generator = torch.Generator().manual_seed(0)
    for norm in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        c = norm.num_features
        norm.bias.data = 0.1 * torch.randn(c, generator=generator)
        norm.running_mean = 0.1 * torch.randn(c, generator=generator)
        norm.running_var = 0.5 + torch.rand(c, generator=generator)
    return model


def frozen(model: nn.Module) -> nn.Module:
    model = model.eval().to(DEVICE)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def score_gap(model, x, target) -> torch.Tensor:
    """f(x) - f(0) for each sample's target, in the model's own precision."""
    with torch.no_grad():
        return model(x).gather(1, target[:, None])[:, 0] - model(torch.zeros_like(x)).gather(1, target[:, None])[:, 0]


def relative_errors(values, gap) -> np.ndarray:
    """|sum(values) - gap| / |gap| a sample, the sum in float64 as leanlens' own delta takes it:
    Captum's delta sums in float32, off by up to ~1e-7 of the gap on a 64×64 image, as large as
    what a converged rule leaves on a smooth net (it decided which rule "met" the other's error)."""
    values, gap = torch.as_tensor(values).detach().double().cpu(), torch.as_tensor(gap).double().cpu()
    return ((values.flatten(1).sum(1) - gap).abs() / gap.abs()).numpy()


def captum_errors(model, x, target, batch):
    """Captum's default IG call and each sample's relative completeness error."""
    values = IntegratedGradients(model).attribute(x, target=target, n_steps=50, internal_batch_size=batch)
    return relative_errors(values, score_gap(model, x, target))


def float64_gap(model, x, target) -> torch.Tensor:
    """f(x) - f(0) of a float64 copy of the model: completeness against it is the integration's own
    error, without the float32 forward's rounding of the gap (on a smooth net that rounding is
    nearly all of the float32 delta, for Captum and leanlens alike)."""
    return score_gap(copy.deepcopy(model).double(), x.double(), target)


MAX_STEPS = 65 if SMOKE else 257
REFERENCE_STEPS = 65 if SMOKE else 257


def feature_error(values, reference) -> str:
    """Each sample's per-feature error, sum |value - reference| / sum |reference|: median and max."""
    values, reference = (np.asarray(v, dtype=np.float64).reshape(len(v), -1) for v in (values, reference))
    error = np.abs(values - reference).sum(1) / np.abs(reference).sum(1)
    return f"{np.median(error):.1e} / {error.max():.1e}"


NESTED = ("auto", "clenshaw_curtis", "romberg", "riemann_trapezoid")


def ig_case(name, model, x, captum_batch=None, per_feature=True, rules=NESTED):
    """Captum's worst completeness error, leanlens tol= that error timed against Captum's call, and (with
    `per_feature`) each one's per-feature error against Clenshaw-Curtis on 257 points: completeness is one sum, and on
    a ReLU net its terms' errors cancel, so it is no proof that each value is as accurate."""
    target = model(x).argmax(1)
    reach = float(captum_errors(model, x, target, captum_batch).max())
    ours = lambda rule="auto": ll.explain(model, x, "ig", target=target.cpu().numpy(), tol=reach, rule=rule,
                                          max_steps=MAX_STEPS)

    def points(label: str, e) -> str:
        return f"{label} {e.error.evaluations.sum()} ({int(e.error.met.sum())}/{len(x)})"

    explained = {rule: ours(rule) for rule in rules}
    rows = [points(f"{rule} ({e.options['rule']})" if rule == "auto" else rule, e) for rule, e in explained.items()]
    errors = "—"
    if per_feature:
        # Clenshaw-Curtis on 257 points: at float32's floor on a smooth net, ~0.3 % per feature on a ReLU one
        reference = ll.explain(model, x, "ig", target=target.cpu().numpy(), tol=1e-12, max_steps=REFERENCE_STEPS,
                               rule="clenshaw_curtis").values
        theirs = IntegratedGradients(model).attribute(x, target=target, n_steps=50, internal_batch_size=captum_batch)
        mine, exact_gap = explained["auto"], float64_gap(model, x, target)
        errors = (f"{feature_error(theirs.detach().cpu(), reference)} vs {feature_error(mine.values, reference)} "
                  f"(leanlens' own estimate, error.change: {np.median(mine.error.change):.1e} / "
                  f"{mine.error.change.max():.1e}); worst completeness vs a float64 copy's gap: "
                  f"{relative_errors(theirs, exact_gap).max():.1e} vs {relative_errors(mine.values, exact_gap).max():.1e}")
    folded = lambda: ll.explain(model, x, "ig", target=target.cpu().numpy(), tol=reach, max_steps=MAX_STEPS,
                                fold_bn=True)
    rows.append(points("fold_bn=True", folded()))
    ms = interleaved_median_min_ms({
        "leanlens": ours,
        "folded": folded,
        "captum": lambda: IntegratedGradients(model).attribute(x, target=target, n_steps=50,
                                                               internal_batch_size=captum_batch),
    }, repeats=3 if SMOKE else 5, warmup=1)
    (ours_ms, ours_min), (folded_ms, folded_min), (captum_ms, captum_min) = ms["leanlens"], ms["folded"], ms["captum"]
    ratios = (f"{captum_ms / ours_ms:.2f}× / {captum_ms / folded_ms:.2f}× "
              f"(mins: {captum_min / ours_min:.2f}× / {captum_min / folded_min:.2f}×)")
    return (name, f"{reach:.2e}", f"{ours_ms:.0f} / {folded_ms:.0f}", f"{captum_ms:.0f} (min {captum_min:.0f})",
            ratios, errors, "; ".join(rows))


def ig_rows():
    """One row a model, yielded as it is measured."""
    images = torch.as_tensor(ll.data.load("lesions-hard", n=2 if SMOKE else 8, seed=1).x, device=DEVICE)
    shape = "×".join(map(str, images.shape))
    yield ig_case(f"demo CNN (ReLU), {shape}", frozen(demo_cnn()), images)
    yield ig_case(f"demo CNN with SiLU (smooth), {shape}", frozen(smooth_copy(demo_cnn())), images)
    side = 32 if SMOKE else option("--resnet-side", 224)
    count = 1 if SMOKE else option("--resnet-images", 4)
    photos = torch.rand(count, 3, side, side, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    if not SKIP_RESNET_IG:  # one rule besides the default's, and no reference: each call is minutes on a CPU
        yield ig_case(f"ResNet-50 architecture, {len(photos)}×3×{side}×{side}", frozen(with_norm_statistics(resnet50())), photos,
                      captum_batch=25, per_feature=SMOKE, rules=("auto", "clenshaw_curtis"))


# 2. KernelSHAP at shap's error ----------------------------------------------------------

GROUPS, WIDTH = 12, 5


class Grouped(nn.Module):
    """f(x) = sum over 12 groups of 5 features of a small tanh MLP of the group, float64."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.parts = nn.ModuleList(nn.Sequential(nn.Linear(WIDTH, 8), nn.Tanh(), nn.Linear(8, 1)).double()
                                   for _ in range(GROUPS))

    def forward(self, x):
        x = x.double().view(len(x), GROUPS, WIDTH)
        f = sum(part(x[:, g]) for g, part in enumerate(self.parts))[:, 0]
        return torch.stack([f, -f], 1)

    def exact(self, x) -> np.ndarray:
        """Shapley values with a zero baseline: each group's own, by brute force over its 2^5 coalitions."""
        x = torch.as_tensor(x, dtype=torch.float64)
        out = np.zeros(x.shape)
        for g, part in enumerate(self.parts):
            cols = slice(g * WIDTH, (g + 1) * WIDTH)
            out[:, cols] = ll.explain(part, x[:, cols], "shapley", target=0).values
        return out


def shap_values(model, x, samples, seed):
    import shap

    np.random.seed(seed)  # KernelExplainer draws from NumPy's global generator
    f = lambda rows: model(torch.as_tensor(rows)).detach().numpy()[:, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return shap.KernelExplainer(f, np.zeros((1, x.shape[1]))).shap_values(x, nsamples=samples, silent=True,
                                                                              l1_reg=False)


def kernel_rows():
    """The tol rows (each sampler against shap at the error it reached), then the samplers at equal
    evaluations, yielded as measured. shap's least squares run on NumPy's BLAS: it gets torch's
    thread count too (left at two, its threads also spin after each call, slowing the next one)."""
    with threadpool_limits(torch.get_num_threads()):
        yield from _kernel_rows()


def _kernel_rows():
    model = Grouped().eval()
    x = torch.randn(1 if SMOKE else 4, GROUPS * WIDTH, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64).numpy()
    exact = model.exact(x)
    mae = lambda v: float(np.abs(v - exact).mean())
    with torch.no_grad():
        gap = np.abs(model(torch.as_tensor(x))[:, 0].numpy() - model(torch.zeros_like(torch.as_tensor(x)))[:, 0].numpy())
    # what `tol` promises, and what the IG rows reach: each sample's own error relative to its gap, on
    # every sample (the worst sample's MAE / |f(x) - f(b)|); MAE over all values weighs a small-gap sample
    # as little as a large-gap one, so it ignores where per-sample stopping puts its coalitions
    worst_relative = lambda v: float((np.abs(v - exact).mean(1) / gap).max())
    for tol in ((0.02,) if SMOKE else (0.005, 0.0025)):
        yield kernel_tol_row(model, x, worst_relative, tol, "leverage", {}, "worst per-sample MAE / gap")
    # an explicit batch_size skips the memory probe (two gradient passes); samples=608 (8d + 128) starts
    # from a first design twice the default 4d + 64, one round fewer: what each round's fixed cost is
    cases = [("kernel", {}), ("leverage", {}), ("leverage", {"batch_size": 8192}), ("leverage", {"samples": 608})]
    for tol in ((0.02,) if SMOKE else (0.005, 0.0025)):
        for sampler, options in cases:
            yield kernel_tol_row(model, x, mae, tol, sampler, options)
    for budget in ((500,) if SMOKE else (1000, 4000)):
        errors = {sampler: np.mean([mae(ll.explain(model, x, "kernelshap", target=0, samples=budget, seed=s,
                                                   sampler=sampler).values) for s in range(3)])
                  for sampler in ("kernel", "leverage")}
        errors["shap"] = np.mean([mae(shap_values(model, x, budget, s)) for s in range(3)])
        yield (f"{budget} coalitions: MAE kernel / leverage / shap",
               " / ".join(f"{errors[k]:.2e}" for k in ("kernel", "leverage", "shap")), np.nan, np.nan, np.nan)


def kernel_tol_row(model, x, error, tol, sampler, options, measure="MAE"):
    """leanlens `tol=` against shap given the fewest samples (to within 3 %) that reach the same
    `error` (by default the MAE over all values), both averaged over 3 seeds (one seed's error is noisy
    either way); timed interleaved on seed 0."""
    ours = lambda seed=0: ll.explain(model, x, "kernelshap", target=0, tol=tol, seed=seed, sampler=sampler,
                                     **options)
    used, reached = ours().error.evaluations, np.mean([error(ours(seed).values) for seed in range(3)])
    meets = lambda samples: np.mean([error(shap_values(model, x, samples, seed)) for seed in range(3)]) <= reached
    samples = fewest_samples(meets, start=int(used.max()), least=2 * x.shape[1])
    ms = interleaved_ms({"leanlens": ours, "shap": lambda: shap_values(model, x, samples, 0)},
                        repeats=3 if SMOKE else 7, warmup=1)
    extra = "".join(f", {k}={v}" for k, v in options.items())
    name = f"tol={tol}, sampler={sampler}{extra}: leanlens {'/'.join(map(str, used))} coalitions a sample vs shap {samples}"
    return (name, f"{measure} {reached:.2e}", ms["leanlens"], ms["shap"], ms["shap"] / ms["leanlens"])


def fewest_samples(meets, start: int, least: int) -> int:
    """The fewest samples for which `meets(samples)`, to within 3 %: steps of 1.25× from `start`
    (shap gives every sample one count: start from our largest) bracket it, then bisection (the
    1.25× grid alone gave shap up to 25 % more samples than it needed, flattering the ratio)."""
    if meets(start):
        high, low = start, int(start / 1.25)
        while low > least and meets(low):
            high, low = low, int(low / 1.25)
        if low <= least:
            return high
    else:
        low, high = start, int(start * 1.25)
        while not meets(high) and high < 2**16:
            low, high = high, int(high * 1.25)
    while high - low > max(2, 0.03 * high):
        middle = (low + high) // 2
        low, high = (low, middle) if meets(middle) else (middle, high)
    return high


# 3. IG within a memory budget ----------------------------------------------------------

def peak_bytes(run) -> int:
    """Peak memory `run()` adds: GPU allocator's peak, or the process's peak RSS (reset first)."""
    if DEVICE.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        run()
        return torch.cuda.max_memory_allocated() - start
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    status = lambda key: int(re.search(key + r":\s+(\d+)", Path("/proc/self/status").read_text())[1]) * 1024
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    start = status("VmRSS")
    run()
    return status("VmHWM") - start


def memory_rows():
    model = frozen(resnet50())
    side, n, steps = (32, 1, 30) if SMOKE else (224, 32 if DEVICE.type == "cuda" else 1, 300)
    budget = "1GB" if SMOKE else "2GB"
    x = torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    start = time.perf_counter()
    used = peak_bytes(lambda: ll.explain(model, x, "ig", target=0, steps=steps, memory=budget))
    return [(f"IG {steps} steps, ResNet-50 arch, {n}×3×{side}×{side}, memory={budget}",
             f"{used / 2**30:.2f} GiB", f"{time.perf_counter() - start:.1f} s", DEVICE.type)]


def main() -> None:
    print("| IG case | error to reach (Captum's worst) | leanlens tol= ms, default / fold_bn=True | Captum 50 steps ms "
          "| speed-up, medians (mins) | per-feature error, median / max: Captum vs leanlens (and completeness vs a float64 gap) | points used (samples met), per rule |")
    print("|---|---:|---:|---:|---:|---|---|")
    for name, reach, ours, theirs, ratio, errors, rules in ([] if KERNELSHAP_ONLY else ig_rows()):
        print(f"| {name} | {reach} | {ours} | {theirs} | {ratio} | {errors} | {rules} |", flush=True)
    print("\n| KernelSHAP case | error reached (vs exact) | leanlens ms | shap ms | speed-up |")
    print("|---|---:|---:|---:|---:|")
    for name, error, ours, theirs, ratio in ([] if IG_ONLY else kernel_rows()):
        print(f"| {name} | {error} | {ours:.0f} | {theirs:.0f} | {ratio:.1f}× |", flush=True)
    print("\n| memory case | peak added | time | device |")
    print("|---|---:|---:|---|")
    for row in ([] if KERNELSHAP_ONLY or IG_ONLY else memory_rows()):
        print("| " + " | ".join(row) + " |")
    print(f"\n{'smoke run: figures are not results; ' if SMOKE else ''}torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, device {DEVICE}")


if __name__ == "__main__":
    main()
