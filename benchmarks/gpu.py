"""GPU timings: IG and Grad-CAM++ on a ResNet-50 at 224×224, leanlens against Captum, one run.

    PYTHONPATH=src python benchmarks/gpu.py            # on the GPU machine
    PYTHONPATH=src python benchmarks/gpu.py --smoke    # tiny sizes on CPU: does every row run?

Prints a Markdown table (medians of 7 after 2 warm-ups, CUDA synchronised). The smoke run
exists because GPU time is scarce: a script that breaks should break here, not there.
"""

from __future__ import annotations

import argparse

import torch
from captum.attr import IntegratedGradients, LayerGradCam
from resnet50 import resnet50  # beside this script, which Python puts first on sys.path
from timing import ig_floor, median_ms

import leanlens as ll
from leanlens.models.torch_folding import gradient_module
from leanlens.models.torch_model import inference


def relative_delta(delta, gap) -> float:
    """Mean |completeness error| over mean |f(x) − f(baseline)|."""
    return float(delta.abs().mean() / gap.abs().mean())


def main() -> None:
    args = _arguments()
    device, n, steps, chunk, side, repeats = (
        ("cpu", 1, 2, 2, 64, 1) if args.smoke else ("cuda", 8, 50, 100, 224, 7))
    torch.backends.cudnn.benchmark = True  # for every contender alike
    torch.manual_seed(0)
    model = resnet50().eval().to(device)
    x = torch.randn(n, 3, side, side, device=device)
    with torch.no_grad():
        target = model(x).argmax(1)
        gap = model(x).gather(1, target[:, None])[:, 0] - model(torch.zeros_like(x)).gather(1, target[:, None])[:, 0]
    folded = gradient_module(model)  # the copy leanlens differentiates with fold_bn=True
    rows = []

    def row(work, fn, delta=None):
        rows.append((work, median_ms(fn, repeats=repeats, warmup=min(2, repeats)), delta))

    def captum_ig(network, autocast=False):
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            return IntegratedGradients(network).attribute(x, target=target, n_steps=steps, internal_batch_size=chunk,
                                                          return_convergence_delta=True)

    def ours_ig(autocast=False, fold_bn=False, run=ll.attribute):  # timed as attribute(): no NumPy round trip
        return run(model, x, "ig", target=target, steps=steps, batch_size=chunk, autocast=autocast, fold_bn=fold_bn)

    for autocast in (False, True):
        precision = "autocast (bf16)" if autocast else "fp32 (TF32 convs)"
        row(f"IG, Captum, {precision}", lambda a=autocast: captum_ig(model, a),
            relative_delta(captum_ig(model, autocast)[1], gap))
        row(f"IG, Captum on the BN-folded copy, {precision}", lambda a=autocast: captum_ig(folded, a),
            relative_delta(captum_ig(folded, autocast)[1], gap))
        for fold_bn in (False, True):
            delta = torch.as_tensor(ours_ig(autocast, fold_bn, run=ll.explain).delta, device=device)
            row(f"IG, leanlens{', fold_bn=True' if fold_bn else ''}, {precision}",
                lambda a=autocast, f=fold_bn: ours_ig(a, f), relative_delta(delta, gap))
        for network, name in ((model, "model"), (folded, "BN-folded copy")):
            with inference(network):  # parameters frozen, as leanlens runs: no weight gradients in the floor
                row(f"floor: fwd+bwd over every point, {name}, {precision}",
                    lambda net=network, a=autocast: ig_floor(net, x, target, steps, chunk, bf16=a))

    batch = torch.randn(8 * n, 3, side, side, device=device)
    with torch.no_grad():
        labels = model(batch).argmax(1)
    row(f"forward, {len(batch)} images", torch.no_grad()(lambda: model(batch)))
    for fold_bn in (False, True):
        row(f"Grad-CAM++ on layer4, {len(batch)} images, leanlens{', fold_bn=True' if fold_bn else ''}",
            lambda f=fold_bn: ll.attribute(model, batch, "gradcam++", target=labels, layer="layer4", fold_bn=f))
    row(f"Grad-CAM on layer4, {len(batch)} images, Captum LayerGradCam",
        lambda: LayerGradCam(model, model.layer4).attribute(batch, target=labels))
    _print(model, rows, reference=rows[0][1], n=n, steps=steps, side=side)


def _arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on CPU, one repeat: check that every row runs")
    return parser.parse_args()


def _print(model, rows, reference: float, n: int, steps: int, side: int) -> None:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (smoke run)"
    print(f"{device}, torch {torch.__version__}, model {type(model).__module__}.{type(model).__name__}, "
          f"{sum(p.numel() for p in model.parameters()):,} params; IG on {n}×3×{side}×{side}, {steps} steps\n")
    print("| work | ms | Captum fp32 IG / this | mean abs delta / mean abs gap |")
    print("|---|---|---|---|")
    for work, ms, delta in rows:
        ratio = f"{reference / ms:.2f}×" if work.startswith(("IG", "floor")) else ""
        print(f"| {work} | {ms:.1f} | {ratio} | {'' if delta is None else f'{delta:.2e}'} |")


if __name__ == "__main__":
    main()
