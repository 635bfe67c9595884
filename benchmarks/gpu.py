"""GPU timings: IG and Grad-CAM++ on a ResNet-50 at 224×224, leanlens against Captum, one run.

    PYTHONPATH=src python benchmarks/gpu.py

Prints a Markdown table (medians of 7 after 2 warm-ups, CUDA synchronised).
"""

from __future__ import annotations

import torch
from captum.attr import IntegratedGradients, LayerGradCam
from resnet50 import resnet50  # beside this script, which Python puts first on sys.path
from timing import ig_floor, median_ms

import leanlens as ll

N, STEPS, CHUNK = 8, 50, 100


def relative_delta(delta, gap):
    return float(delta.abs().mean() / gap.abs().mean())


def main() -> None:
    torch.backends.cudnn.benchmark = True  # for every contender alike
    torch.manual_seed(0)
    model = resnet50().eval().cuda()
    x = torch.randn(N, 3, 224, 224, device="cuda")
    with torch.no_grad():
        target = model(x).argmax(1)
        gap = model(x).gather(1, target[:, None])[:, 0] - model(torch.zeros_like(x)).gather(1, target[:, None])[:, 0]
    ig = IntegratedGradients(model)
    rows = []

    def captum_ig(autocast=False, steps=STEPS):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            return ig.attribute(x, target=target, n_steps=steps, internal_batch_size=CHUNK, return_convergence_delta=True)

    def ours_ig(autocast=False, steps=STEPS):
        return ll.attribute(model, x, "ig", target=target, steps=steps, batch_size=CHUNK, autocast=autocast)

    _, captum_delta = captum_ig()
    captum_ms = median_ms(lambda: captum_ig())
    rows.append(("IG 50 steps, Captum (fp32/TF32 convs)", captum_ms, relative_delta(captum_delta, gap)))
    captum_bf16 = median_ms(lambda: captum_ig(autocast=True))
    rows.append(("IG 50 steps, Captum inside torch.autocast(bf16)", captum_bf16, relative_delta(captum_ig(True)[1], gap)))
    for autocast in (False, True):
        explanation = ll.explain(model, x, "ig", target=target.cpu().numpy(), steps=STEPS, batch_size=CHUNK, autocast=autocast)
        ms = median_ms(lambda a=autocast: ours_ig(autocast=a))
        delta = torch.as_tensor(explanation.delta).cuda()
        rows.append((f"IG 50 steps, leanlens{' autocast=True (bf16)' if autocast else ' (fp32/TF32 convs)'}", ms, relative_delta(delta, gap)))
    for p in model.parameters():
        p.requires_grad_(False)
    rows.append(("floor: fwd+bwd over 400 points, NCHW", median_ms(lambda: ig_floor(model, x, target, STEPS, CHUNK)), None))
    rows.append(("floor: fwd+bwd over 400 points, NCHW, bf16 autocast", median_ms(lambda: ig_floor(model, x, target, STEPS, CHUNK, bf16=True)), None))
    model.to(memory_format=torch.channels_last)  # weights NHWC too, as H100 users often keep them
    rows.append(("floor: fwd+bwd over 400 points, NHWC model and input", median_ms(lambda: ig_floor(model, x, target, STEPS, CHUNK, channels_last=True)), None))
    rows.append(("floor: fwd+bwd over 400 points, NHWC, bf16 autocast",
                 median_ms(lambda: ig_floor(model, x, target, STEPS, CHUNK, channels_last=True, bf16=True)), None))
    rows.append(("IG 50 steps, Captum, NHWC model", median_ms(lambda: captum_ig()), None))
    rows.append(("IG 50 steps, leanlens, NHWC model", median_ms(lambda: ours_ig()), None))
    rows.append(("IG 50 steps, Captum, NHWC model, autocast", median_ms(lambda: captum_ig(True)), None))
    rows.append(("IG 50 steps, leanlens, NHWC model, autocast=True", median_ms(lambda: ours_ig(True)), None))
    model.to(memory_format=torch.contiguous_format)
    rows.append(("IG 50 steps, Captum, parameters frozen", median_ms(lambda: captum_ig()), None))
    for p in model.parameters():
        p.requires_grad_(True)

    x64 = torch.randn(64, 3, 224, 224, device="cuda")
    with torch.no_grad():
        t64 = model(x64).argmax(1)
        forward = median_ms(lambda: model(x64))
    rows.append(("forward, 64×3×224×224", forward, None))
    layer = "layer4"
    rows.append(("Grad-CAM++ on layer4, 64 images, leanlens",
                 median_ms(lambda: ll.attribute(model, x64, "gradcam++", target=t64, layer=layer)), None))
    rows.append(("Grad-CAM on layer4, 64 images, Captum LayerGradCam",
                 median_ms(lambda: LayerGradCam(model, model.layer4).attribute(x64, target=t64)), None))

    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, model {type(model).__module__}.{type(model).__name__}, "
          f"{sum(p.numel() for p in model.parameters()):,} params\n")
    print("| work | ms | vs Captum fp32 IG | mean abs delta / mean abs gap |")
    print("|---|---|---|---|")
    for work, ms, delta in rows:
        ratio = f"{captum_ms / ms:.2f}×" if work.startswith(("IG", "floor")) else ""
        print(f"| {work} | {ms:.1f} | {ratio} | {'' if delta is None else f'{delta:.2e}'} |")


if __name__ == "__main__":
    main()
