"""Is int8 faster than the best fp32 path of the same model? The demo CNN and ResNet-50, batch 1 and 32.

For each model and batch size, one interleaved run per thread count (1 and 2; every contender
gets the same count): PyTorch eager, `torch.compile` (where it works here), ONNX Runtime fp32 and
the int8 graph of `ll.quantize(..., "int8")`. The speed-up is read against the fastest fp32
contender of the same run, never against eager PyTorch alone. An ONNX Runtime profile of the int8
graph then says where its time goes (share of kernel time per operator type).

Weights are random: speed needs the architecture, not the accuracy (the accuracy of int8 is
measured by `benchmarks/quantization.py`). The demo CNN is the demo's v1: `SmallResNet(width=32)`
pruned by half with Taylor scores, widths rounded to 8.

    PYTHONPATH=src python benchmarks/int8_speed.py            # ~10 minutes on 2 cores
    PYTHONPATH=src python benchmarks/int8_speed.py --smoke    # the same code path in a minute
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import leanlens as ll
from leanlens.audit.timing import interleaved, ort_session, torch_threads
from leanlens.compression import prune
from leanlens.models import SmallResNet

sys.path.insert(0, str(Path(__file__).parent))
from resnet50 import ResNet50

BATCHES = (1, 32)
THREAD_COUNTS = (1, 2)


def demo_cnn(rng: np.random.Generator) -> tuple[torch.nn.Module, np.ndarray]:
    """The demo's pruned v1 (random weights) and calibration images of its input shape."""
    torch.manual_seed(0)
    x = rng.random((64, 1, 64, 64), dtype=np.float32)
    y = rng.integers(0, 2, 64)
    return prune(SmallResNet(width=32).eval(), (x, y), ratio=0.5, criterion="taylor", round_to=8).module, x


def resnet50(rng: np.random.Generator, size: int) -> tuple[torch.nn.Module, np.ndarray]:
    torch.manual_seed(0)
    return ResNet50().eval(), rng.random((16, 3, size, size), dtype=np.float32)


def contenders(module: torch.nn.Module, fp32_graph: bytes, int8_graph: bytes, x: np.ndarray, threads: int,
               compiled) -> dict[str, object]:
    """Zero-argument calls, one a runtime, each running `x` once."""
    tensor = torch.from_numpy(x)
    fp32, int8 = ort_session(fp32_graph, threads), ort_session(int8_graph, threads)
    calls = {"torch eager": lambda: _no_grad(module, tensor)}
    if compiled is not None:
        calls["torch.compile"] = lambda: _no_grad(compiled, tensor)
    calls["ORT fp32"] = lambda: fp32.run(None, {fp32.get_inputs()[0].name: x})
    calls["ORT int8"] = lambda: int8.run(None, {int8.get_inputs()[0].name: x})
    return calls


def _no_grad(module, tensor):
    with torch.inference_mode():
        return module(tensor)


def compiled_or_none(module: torch.nn.Module, x: np.ndarray):
    """`torch.compile(module)` when it compiles and runs here, else None (said on stderr)."""
    try:
        compiled = torch.compile(module)
        _no_grad(compiled, torch.from_numpy(x))
        return compiled
    except Exception as error:  # noqa: BLE001 - inductor needs a C compiler; report and go on
        print(f"torch.compile unavailable: {str(error).splitlines()[0][:120]}", file=sys.stderr)
        return None


def op_shares(int8_graph: bytes, x: np.ndarray, threads: int, runs: int = 5) -> list[tuple[str, float]]:
    """Share of the int8 graph's kernel time per operator type, from an ONNX Runtime profile."""
    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "int8")
        session = ort.InferenceSession(int8_graph, options, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            session.run(None, {session.get_inputs()[0].name: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    spent = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            spent[event["args"]["op_name"]] += event["dur"]
    total = sum(spent.values())
    return [(op, 100 * us / total) for op, us in spent.most_common(5)]


def measure(name: str, module: torch.nn.Module, calibration: np.ndarray, repeats: int, compile_: bool) -> None:
    started = time.perf_counter()
    int8 = ll.quantize(module, calibration, "int8", calibration_samples=len(calibration), batch_size=8)
    fp32_graph, int8_graph = int8.fp32.model_bytes, int8.model_bytes
    print(f"## {name}: fp32 graph {len(fp32_graph) / 2**20:.1f} MiB, int8 graph {len(int8_graph) / 2**20:.1f} MiB "
          f"(quantized in {time.perf_counter() - started:.0f} s)\n")
    print("| batch | threads | runtime | median ms | min ms | vs best fp32 |\n|---|---|---|---|---|---|")
    for batch in BATCHES:
        x = np.ascontiguousarray(np.resize(calibration, (batch, *calibration.shape[1:])))
        compiled = compiled_or_none(module, x) if compile_ else None
        for threads in THREAD_COUNTS:
            with torch_threads(threads):
                timings = interleaved(contenders(module, fp32_graph, int8_graph, x, threads, compiled),
                                      repeats=repeats, warmup=2, burst=1 if batch > 1 else 5)
            best = min(t.median_ms for label, t in timings.items() if label != "ORT int8")
            for label, t in timings.items():
                print(f"| {batch} | {threads} | {label} | {t.median_ms:.3f} | {t.min_ms:.3f} | "
                      f"{best / t.median_ms:.2f}× |")
    for batch in BATCHES:
        x = np.ascontiguousarray(np.resize(calibration, (batch, *calibration.shape[1:])))
        shares = ", ".join(f"{op} {share:.1f} %" for op, share in op_shares(int8_graph, x, 2))
        print(f"\nint8 kernel time at batch {batch}, 2 threads: {shares}")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small images and few rounds: checks the script runs")
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    repeats = 3 if args.smoke else 15
    print(f"# int8 against the best fp32 path — {platform.machine()}, {_cpu()}, torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}\n")
    started = time.perf_counter()
    measure("demo CNN (pruned SmallResNet, 1×64×64)", *demo_cnn(rng), repeats, not args.no_compile)
    size = 64 if args.smoke else 224
    measure(f"ResNet-50 architecture (3×{size}×{size})", *resnet50(rng, size), max(3, repeats // 3),
            not args.no_compile and not args.smoke)
    print(f"Run took {time.perf_counter() - started:.0f} s.")


def _cpu() -> str:
    """The CPU's name and its vector extensions that int8 kernels use."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    extensions = [flag for flag in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if flag in flags]
    return f"{name} ({', '.join(extensions) or 'no AVX2'}), {torch.get_num_threads()} cores for torch"


if __name__ == "__main__":
    main()
