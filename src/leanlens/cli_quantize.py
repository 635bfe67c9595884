"""`leanlens quantize MODEL DATA --scheme ...`: a float model to real low-bit kernels, with its twin."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from leanlens.cli import (
    MODEL_HELP,
    ReplaceOut,
    TrustPickle,
    Weights,
    _progress,
    _refused,
    _stage,
    console,
    refuse_to_replace,
)
from leanlens.errors import LeanlensError


def quantize(
    model: Annotated[str, typer.Argument(help=f"the float model: {MODEL_HELP}")],
    data: Annotated[str, typer.Argument(help="an .npz file (x, y) or a built-in dataset name to calibrate and measure on")],
    scheme: Annotated[str, typer.Option("--scheme", help="int8, int8-dynamic, int8-qat or int4-weight")] = "int8",
    out: Annotated[Path, typer.Option(
        "--out", help="a leanlens model file (graph, float graph and twin), or a bare .onnx to deploy")
    ] = Path("quantized.leanlens"),
    calibrate_method: Annotated[str, typer.Option(
        "--calibrate-method", help="int8 activation ranges: minmax, percentile or entropy")] = "minmax",
    max_drop: Annotated[float | None, typer.Option(
        "--max-drop", help="int8: accuracy points it may lose on DATA; the worst layers go back to float")] = None,
    epochs: Annotated[float | None, typer.Option(
        "--epochs", help="int8-qat: passes of quantization-aware training over DATA (default 1)")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="int8-qat: learning rate (default 1e-4)")] = None,
    n: Annotated[int | None, typer.Option("--n", help="use only the first N samples of DATA")] = None,
    weights: Weights = None,
    trust_pickle: TrustPickle = False,
    force: ReplaceOut = False,
) -> None:
    """Quantize a float model and write it: real low-bit kernels on ONNX Runtime, with its twin."""
    from leanlens.cli_inputs import read_data
    from leanlens.compression import quantize as run_quantize
    from leanlens.compression.twin import float_layers
    from leanlens.models.modelfile import resolve_model, save

    try:
        refuse_to_replace(out, force)
        dataset = read_data(data, n)
        float_model = resolve_model(model, weights, trust_pickle)
        training = scheme == "int8-qat"  # the one scheme that takes long enough to show progress
        with _progress(transient=True, disable=not (training and console.is_terminal)) as progress:
            on_step = _stage(progress)("quantization-aware training", 0) if training else None
            quantized = run_quantize(float_model, dataset, scheme, calibrate_method=calibrate_method,
                                     max_drop=max_drop, epochs=epochs, lr=lr, on_step=on_step)
        written = quantized.save(out) if out.suffix.lower() == ".onnx" else save(quantized, out)
    except LeanlensError as error:
        raise _refused(error) from None
    fp32, low_bit = (m.predict(dataset.x).argmax(1) for m in (quantized.fp32, quantized))
    console.print(f"{escape(scheme)}: {len(quantized.fp32.model_bytes) / 1024:,.0f} KiB float graph → "
                  f"{len(quantized.model_bytes) / 1024:,.0f} KiB; accuracy on {len(dataset)} samples "
                  f"{(fp32 == dataset.y).mean():.2%} → {(low_bit == dataset.y).mean():.2%}, "
                  f"{int((fp32 != low_bit).sum())} predictions changed")
    if max_drop is not None:
        console.print(f"layers kept in float: {escape(', '.join(float_layers(quantized)) or 'none')}")
    console.print(f"written: {escape(str(written))}")
