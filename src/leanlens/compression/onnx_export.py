"""Export a PyTorch module to ONNX with batch-norm folded into the convolutions."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings

import torch
from torch import fx, nn
from torch.fx.experimental.optimization import fuse

from leanlens.errors import BadInput


def fold_batchnorm(module: nn.Module) -> fx.GraphModule:
    """A traced copy of `module`, in eval mode, whose conv weights absorb the following batch-norm.

    `module` itself is left as it was, training flags included. The exporter writes this
    copy's weights as they are (tests/test_modelfile.py checks equality), which is how the
    int8 model's scales are matched back to torch layers.
    """
    try:
        return fuse(copy.deepcopy(module).eval(), inplace=True)
    except Exception as error:  # noqa: BLE001 - fx tracing raises many types on data-dependent control flow
        raise BadInput(
            f"cannot trace {type(module).__name__} for export: {str(error).splitlines()[0][:160]}",
            "remove data-dependent Python control flow from forward()",
        ) from None


def to_onnx(module: nn.Module, example: torch.Tensor, opset: int = 17) -> bytes:
    """ONNX bytes of `module` (eval mode) with a dynamic batch axis."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is the one that handles fx-traced modules without extra
        # dependencies; its deprecation notice is not actionable for our users.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(), (example,), buffer, dynamo=False, opset_version=opset,
            input_names=["x"], output_names=["scores"],
            dynamic_axes={"x": {0: "batch"}, "scores": {0: "batch"}},
        )
    return buffer.getvalue()


@contextlib.contextmanager
def quiet_onnx_tools():
    """ORT's quantizers log advice we already follow (pre-processing) and each node they visit,
    and its histogram calibrators print their progress: none of it belongs in a user's output."""
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)
