"""ResNet-50 pruned to ≤ 8.3 M params: latency-aware widths against Torch-Pruning's uniform Taylor, in wall time.

    PYTHONPATH=src python benchmarks/compression.py                 # this CPU, batches 16 and 32
    PYTHONPATH=src python benchmarks/compression.py --device cuda   # batch 256, fp32 and bf16 autocast, eager
    PYTHONPATH=src python benchmarks/compression.py --smoke         # the GPU rows at tiny sizes on CPU: do they run?

Contenders, all from the same random-weight ResNet-50 and the same Taylor gradients (one
backward on random labels; speed needs the architecture, not the accuracy):
- dense;
- leanlens: widths from `allocate` on a latency table measured here (cached), params budget;
- Torch-Pruning's MetaPruner + TaylorImportance, the same ratio in every layer, round_to 8 and
  None (ANCHORS' rows; 32 too on CUDA), its ratio the smallest that reaches the same params budget.
Every contender runs in turns (interleaved rounds, equal threads); the table gives median and
least ms, the speed-up over dense (median), the MAC ratio dense/pruned and speed-up / MAC ratio.
"""

from __future__ import annotations

import argparse
import copy
import sys

import torch
import torch.nn.functional as F
import torch_pruning as tp
from resnet50 import ResNet50  # beside this script, which Python puts first on sys.path

from leanlens.audit.timing import interleaved, ort_session, torch_threads
from leanlens.compression.allocation import allocate
from leanlens.compression.latency import default_round_to, latency_table
from leanlens.compression.onnx_export import fold_batchnorm, to_onnx
from leanlens.compression.widths import channel_scores, prune_to_widths

PARAMS_TARGET = 8.3e6  # the seeds' headline: ResNet-50 at 25.6 M → 8.3 M params, 3.2× faster


def main() -> None:
    args = _arguments()
    device = args.device
    side, batches, repeats = (32, (2,), 2) if args.smoke else (224, args.batches or _default_batches(device), args.repeats)
    threads = args.threads or torch.get_num_threads()
    torch.backends.cudnn.benchmark = True  # for every contender alike
    torch.manual_seed(0)
    dense = ResNet50().eval().to(device)
    small = torch.randn(1, 3, side, side, device=device)  # for graphs and counting: sizes, not speed
    target = PARAMS_TARGET / _params(dense)
    models = {"dense": dense, "leanlens latency-aware": _ours(dense, small, batches[0], side, target, threads, args)}
    halvings = 3 if args.smoke else 8  # of the uniform ratio's interval: 0.9 / 2**8 ≈ 0.004 at full size
    gpu_rows = device == "cuda" or args.smoke  # the smoke run takes the GPU's code path, on CPU
    for round_to in (8, 32, None) if gpu_rows else (8, None):  # 32: ANCHORS' best GPU row
        name = f"Torch-Pruning uniform Taylor, round_to={round_to}"
        models[name] = _uniform_taylor(dense, small, target, round_to, halvings)
    dtypes = (torch.float32, torch.bfloat16) if gpu_rows else (torch.float32,)
    print(f"ResNet-50 {side}×{side}, {device}, {threads} threads, {repeats} interleaved rounds; "
          f"params target {PARAMS_TARGET / 1e6:.1f} M\n")
    for dtype in dtypes:
        for batch in batches:
            _print_rows(models, small, _timings(models, batch, side, device, dtype, threads, repeats), batch, dtype)
    if args.ort:  # the same widths on a runtime that fuses what eager torch runs op by op
        print("ONNX Runtime fp32 (batch norms folded, graph optimizations on)\n")
        for batch in batches:
            timings = _timings(models, batch, side, device, torch.float32, threads, repeats, runtime="ort")
            _print_rows(models, small, timings, batch, torch.float32)


def _ours(dense, small, batch: int, side: int, target: float, threads: int, args) -> torch.nn.Module:
    """Latency table at the first batch size (cached on disk), Taylor scores, widths, pruned copy."""
    widths = (1.0, 0.5) if args.smoke else (1.0, 0.75, 0.5, 0.375, 0.25, 0.125)
    example = torch.randn(batch, 3, side, side, device=args.device)
    table = latency_table(dense, example, widths=widths, device=args.device, threads=threads,
                          repeats=1 if args.smoke else 3, on_step=_progress("latency table"))
    scored = _with_taylor_gradients(dense, small.shape[-1])
    scores = channel_scores(scored, small, tp.importance.TaylorImportance())
    chosen = allocate(dense, small, {"params": target}, scores, table,
                      round_to=args.round_to or default_round_to(args.device))
    return prune_to_widths(dense, small, chosen, scores).eval()


def _uniform_taylor(dense, small, target: float, round_to: int | None, halvings: int) -> torch.nn.Module:
    """MetaPruner + TaylorImportance at the smallest uniform ratio whose model meets the params target."""
    low, high = 0.0, 0.9
    for _ in range(halvings):  # bisection: params fall as the ratio grows
        middle = (low + high) / 2
        if _params(_metapruned(dense, small, middle, round_to)) <= target * _params(dense):
            high = middle
        else:
            low = middle
    return _metapruned(dense, small, high, round_to).eval()


def _metapruned(dense, small, ratio: float, round_to: int | None) -> torch.nn.Module:
    model = _with_taylor_gradients(dense, small.shape[-1])
    pruner = tp.pruner.MetaPruner(model, small, importance=tp.importance.TaylorImportance(), pruning_ratio=ratio,
                                  round_to=round_to, ignored_layers=[model.fc])
    pruner.step()
    model.zero_grad(set_to_none=True)
    return model


def _with_taylor_gradients(dense, side: int) -> torch.nn.Module:
    """A copy holding the loss gradient of one random batch: every contender is scored on the same one."""
    model = copy.deepcopy(dense).eval()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, side, side, generator=generator).to(next(model.parameters()).device)
    y = torch.randint(0, 1000, (8,), generator=generator).to(x.device)
    F.cross_entropy(model(x), y).backward()
    return model


def _timings(models, batch: int, side: int, device: str, dtype: torch.dtype, threads: int, repeats: int,
             runtime: str = "torch"):
    x = torch.randn(batch, 3, side, side, device=device)

    def call(model):
        if runtime == "ort":
            return _ort_call(model, x, threads)

        def run():
            with torch.no_grad(), torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
                return model(x)

        return run

    sync = torch.cuda.synchronize if device == "cuda" else None
    with torch_threads(threads):
        return interleaved({name: call(model) for name, model in models.items()}, repeats=repeats,
                           warmup=1 if repeats < 3 else 2, sync=sync, burst=1)


def _ort_call(model, x: torch.Tensor, threads: int):
    """The model as ONNX Runtime runs it in deployment: batch norms folded into the convs, graph
    optimizations on (conv + ReLU fused, NCHWc layout), `threads` intra-op threads."""
    session = ort_session(to_onnx(fold_batchnorm(copy.deepcopy(model)), x[:1].cpu()), threads)
    feed = {session.get_inputs()[0].name: x.cpu().numpy()}
    return lambda: session.run(None, feed)


def _print_rows(models, small, timings, batch: int, dtype: torch.dtype) -> None:
    dense_macs, dense_ms = _macs(models["dense"], small), timings["dense"].median_ms
    print(f"batch {batch}, {str(dtype).removeprefix('torch.')}\n")
    print("| model | params | MACs (1 image) | MAC ratio | median ms | min ms | speed-up | speed-up / MAC ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name, model in models.items():
        macs, timing = _macs(model, small), timings[name]
        mac_ratio, speed_up = dense_macs / macs, dense_ms / timing.median_ms
        print(f"| {name} | {_params(model) / 1e6:.2f} M | {macs / 1e9:.2f} G | {mac_ratio:.2f} | "
              f"{timing.median_ms:.1f} | {timing.min_ms:.1f} | {speed_up:.2f}× | {speed_up / mac_ratio:.2f} |")
    print()


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _macs(model, small) -> int:
    with torch.no_grad():
        macs, _ = tp.utils.count_ops_and_params(model, small)
    return int(macs)


def _progress(what: str):
    def report(done: int, total: int) -> None:
        print(f"\r{what}: {done}/{total} layers", end="\n" if done == total else "", file=sys.stderr, flush=True)

    return report


def _default_batches(device: str) -> tuple[int, ...]:
    return (256,) if device == "cuda" else (16, 32)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on CPU: check that every row runs")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--batches", type=int, nargs="+", help="batch sizes to time (default: 16 32 on CPU, 256 on CUDA)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads for every contender (default: torch's)")
    parser.add_argument("--repeats", type=int, default=9, help="interleaved rounds kept (default 9)")
    parser.add_argument("--ort", action="store_true", help="also time every model on ONNX Runtime fp32 (CPU)")
    parser.add_argument("--round-to", type=int, help="leanlens' channel multiple (default: 8 on CPU, 32 on CUDA)")
    args = parser.parse_args()
    if args.smoke:
        args.device = "cpu"
    if args.ort and args.device != "cpu":
        parser.error("--ort times ONNX Runtime's CPU provider: use it with --device cpu")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here; run with --smoke or on the GPU machine")
    return args


if __name__ == "__main__":
    main()
