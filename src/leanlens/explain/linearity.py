"""Whether a model is piecewise linear in its input, read off the autograd graph of one forward.

IG's nested rules suit different integrands. On a net of ReLUs, max-pools and affine
layers every input gradient is piecewise constant along the path: higher-order rules buy
nothing there, and the plain trapezoid has the smallest error per point, for the
completeness error and for each feature's value alike (benchmarks/RESULTS.md, session 8).
On a smooth net Clenshaw–Curtis converges fastest.

The check walks the graph behind the scores. Every node must be affine in the input (a sum,
a view, a product or division with at most one factor that depends on the input) or a
piecewise-linear switch (ReLU, max, clamp); a batch norm only with running statistics.
Anything else, and a model without a torch graph (Keras, TensorFlow), counts as smooth: an op
missing from these lists costs points, never accuracy, since the tolerance is checked the
same way whichever rule runs. What the graph cannot show: a factor computed from x and then
detached (`x * x.detach()`) looks like a constant, so such a net is taken for linear; the
tolerance still holds, but the trapezoid may need many more points than Clenshaw–Curtis.
"""

from __future__ import annotations

import torch

# Nodes linear in their inputs however many of them depend on x (sums, views, copies, pools).
ADDITIVE = {
    "Add", "Sub", "Neg", "Sum", "Mean", "Cat", "Stack", "View", "UnsafeView", "ReshapeAlias", "Reshape",
    "Expand", "Repeat", "Permute", "Transpose", "T", "Squeeze", "Unsqueeze", "Select", "Slice", "Index", "Clone",
    "ToCopy", "AsStrided", "Flatten", "Split", "SplitWithSizes", "Unbind", "AvgPool2D", "AvgPool1D",
    "AdaptiveAvgPool2D", "AdaptiveAvgPool1D", "ConstantPadNd", "UpsampleNearest2D", "UpsampleBilinear2D",
    "Alias", "Contiguous",
}
NORMS = {"NativeBatchNorm", "CudnnBatchNorm", "MiopenBatchNorm"}  # affine only with running statistics (eval)
# Products: linear when at most one factor depends on x (the weights are frozen, so they are constants).
PRODUCTS = {"Mul", "Div", "Mm", "Bmm", "Addmm", "Convolution", "MkldnnConvolution", "Baddbmm"}
# Piecewise-linear switches: a max, min or clamp of piecewise-linear inputs is piecewise linear.
SWITCHES = {"Relu", "LeakyRelu", "Hardtanh", "Threshold", "Clamp", "ClampMin", "ClampMax", "MaxPool2DWithIndices",
            "MaxPool1DWithIndices", "Max", "Min", "Maximum", "Minimum", "Abs"}


def op_name(node) -> str:
    """'ReluBackward0' -> 'Relu': the forward op a graph node differentiates."""
    name = type(node).__name__
    return name[: name.rindex("Backward")] if "Backward" in name else name


def piecewise_linear(scores: torch.Tensor) -> bool:
    """Whether every node behind `scores` is affine or a piecewise-linear switch of the input."""
    if scores.grad_fn is None:
        return False
    seen, todo = set(), [scores.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if type(node).__name__ == "AccumulateGrad":  # the input itself
            continue
        inputs = [child for child, _ in node.next_functions if child is not None]
        if not linear_node(node, inputs):
            return False
        todo.extend(inputs)
    return True


def linear_node(node, inputs: list) -> bool:
    """Whether one node is affine or a piecewise-linear switch in the inputs that depend on x."""
    name = op_name(node)
    if name in PRODUCTS:  # x * x is not linear, nor is c / x
        return len(inputs) <= 1 and not (name == "Div" and node.next_functions[1][0] is not None)
    if name in NORMS:  # with the batch's own statistics (training mode, instance norm) it divides by x's spread
        return getattr(node, "_saved_training", True) is False
    return name in ADDITIVE or name in SWITCHES
