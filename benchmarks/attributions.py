"""Time leanlens' attributions against Captum and against the floor, in one run.

    .venv/bin/python benchmarks/attributions.py [WORDS...]

With words, only the rows whose name contains one of them run (e.g. `grad-cam`).
Prints a Markdown table of medians and ratios (no test depends on these timings). Each row's
contenders run in turns, so drift in the machine's speed touches them alike.
"""

from __future__ import annotations

import math
import platform
import sys

import torch
from captum.attr import (
    IntegratedGradients,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from timing import ig_floor, interleaved_ms

import leanlens as ll
from leanlens.models import SmallResNet


def no_grad(fn):
    def run():
        with torch.no_grad():
            return fn()
    return run


def main() -> None:
    torch.manual_seed(0)
    model = SmallResNet(width=32).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x_np = ll.data.load("lesions", n=32, seed=0).x
    x8, x32 = torch.as_tensor(x_np[:8]), torch.as_tensor(x_np)
    target8, target32 = model(x8).argmax(1), model(x32).argmax(1)
    rows = []
    only = [word.lower() for word in sys.argv[1:]]

    def row(work, ours, captum, reference=None, reference_name="—", repeats=9):
        if only and not any(word in work.lower() for word in only):
            return
        contenders = {"ours": ours, "captum": captum} | ({"reference": reference} if reference else {})
        ms = interleaved_ms(contenders, repeats)
        rows.append((work, ms["ours"], ms["captum"], ms.get("reference", math.nan), reference_name))

    row("IG, 50 steps, 8×1×64×64",
        lambda: ll.explain(model, x_np[:8], "ig", target=target8.numpy(), steps=50, batch_size=128),
        lambda: IntegratedGradients(model).attribute(x8, target=target8, n_steps=50, internal_batch_size=128),
        lambda: ig_floor(model, x8, target8, 50, 128), "fwd+bwd floor")
    row("IG, 50 steps, 8×1×64×64, fold_bn=True",
        lambda: ll.explain(model, x_np[:8], "ig", target=target8.numpy(), steps=50, batch_size=128, fold_bn=True),
        lambda: IntegratedGradients(model).attribute(x8, target=target8, n_steps=50, internal_batch_size=128),
        lambda: ig_floor(model, x8, target8, 50, 128), "fwd+bwd floor")
    row("Grad-CAM++ (captum: Grad-CAM), 32×1×64×64",
        lambda: ll.explain(model, x_np, "gradcam++", target=target32.numpy(), layer="stage3.relu2"),
        lambda: LayerGradCam(model, model.stage3.relu2).attribute(x32, target=target32),
        no_grad(lambda: model(x32)), "plain forward", repeats=41)  # cheap: more rounds, a steadier ratio
    row("Grad-CAM++, fold_bn=True (captum: Grad-CAM), 32×1×64×64",
        lambda: ll.explain(model, x_np, "gradcam++", target=target32.numpy(), layer="stage3.relu2", fold_bn=True),
        lambda: LayerGradCam(model, model.stage3.relu2).attribute(x32, target=target32),
        no_grad(lambda: model(x32)), "plain forward", repeats=41)
    images = x8.repeat(15 * 15 + 1, 1, 1, 1)  # every window of every sample, and the clean batch
    row("occlusion 8×8 window, stride 4, 8×1×64×64",
        lambda: ll.explain(model, x_np[:8], "occlusion", target=target8.numpy(), window=8, stride=4, batch_size=256),
        lambda: Occlusion(model).attribute(x8, sliding_window_shapes=(1, 8, 8), strides=(1, 4, 4), target=target8,
                                           perturbations_per_eval=256),
        no_grad(lambda: [model(images[i : i + 256]) for i in range(0, len(images), 256)]), "forwards alone")
    sigma = float(0.15 * (x8.max() - x8.min()))
    row("SmoothGrad 25 samples, 8×1×64×64",
        lambda: ll.explain(model, x_np[:8], "smoothgrad", target=target8.numpy(), nt_samples=25, batch_size=200),
        lambda: NoiseTunnel(Saliency(model)).attribute(x8, nt_type="smoothgrad", nt_samples=25, stdevs=sigma,
                                                        target=target8, nt_samples_batch_size=25))

    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads\n")
    print("| work | leanlens ms | Captum ms | reference ms | reference | Captum / leanlens | leanlens / reference |")
    print("|---|---|---|---|---|---|---|")
    for work, ours, captum, ref, ref_name in rows:
        vs_ref = "—" if math.isnan(ref) else f"{ours / ref:.2f}"
        print(f"| {work} | {ours:.1f} | {captum:.1f} | {ref:.1f} | {ref_name} | {captum / ours:.2f} | {vs_ref} |")


if __name__ == "__main__":
    main()
