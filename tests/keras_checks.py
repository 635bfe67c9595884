"""Run in a fresh process with KERAS_BACKEND set (Keras fixes its backend at import):
`python keras_checks.py OUT_DIR`. Builds Keras models with the weights of torch ones and
writes what leanlens computes on both to OUT_DIR/results.npz; the tests compare them.

Also records whether wrapping objects that are not Keras models imported keras.
"""

import sys
from pathlib import Path

import numpy as np
import torch
from adapters_support import (
    BACKGROUND,
    FORWARD_METHODS,
    X,
    numpy_mlp,
    torch_mlp,
    weights,
)

import leanlens as ll

ll.wrap(numpy_mlp), ll.wrap(torch_mlp())
keras_imported_by_wrap = "keras" in sys.modules

# only now, after the check above
import keras

CONV_X = np.random.default_rng(5).normal(size=(2, 8, 8, 2)).astype(np.float32)  # channels-last images


def keras_mlp():
    w = weights()
    model = keras.Sequential([keras.Input((X.shape[1],)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(3, activation="softmax")])
    model.set_weights([w["w1"], w["b1"], w["w2"], w["b2"]])
    return model


def conv_pair():
    """A channels-last Keras CNN and the torch CNN with the same weights (channels-first)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(CONV_X.shape[1:])
    act = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    out = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling2D()(act))
    model = keras.Model(inputs, out)
    kernel, bias, dense, dense_bias = (np.asarray(v) for v in model.get_weights())
    module = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                 torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    with torch.no_grad():
        module[0].weight.copy_(torch.as_tensor(kernel.transpose(3, 2, 0, 1)))
        module[0].bias.copy_(torch.as_tensor(bias))
        module[4].weight.copy_(torch.as_tensor(dense.T))
        module[4].bias.copy_(torch.as_tensor(dense_bias))
    return model, module


def autograd_saliency(module, x, target):
    """The gradient of each sample's target score, by torch autograd directly."""
    x = torch.as_tensor(x).requires_grad_(True)
    module(x)[torch.arange(len(x)), torch.as_tensor(target)].sum().backward()
    return x.grad.numpy()


def main(out: Path) -> None:
    results = {"keras_imported_by_wrap": np.array(keras_imported_by_wrap)}
    model = ll.wrap(keras_mlp())
    results["capabilities"] = np.array(sorted(model.capabilities))
    results["predictions"] = model.predict(X)
    for method, options in FORWARD_METHODS.items():
        results[f"forward/{method}"] = ll.explain(model, X, method, background=BACKGROUND, **options).values
    saliency = ll.explain(model, X, "saliency", absolute=False)
    results["saliency"] = saliency.values
    results["saliency_autograd"] = autograd_saliency(torch_mlp(), X, saliency.target)
    for name, network in (("keras", model), ("torch", torch_mlp())):
        ig = ll.explain(network, X, "ig", steps=32)
        results[f"ig_{name}"], results[f"ig_delta_{name}"] = ig.values, ig.delta

    conv_keras, conv_torch = conv_pair()
    channels_first = CONV_X.transpose(0, 3, 1, 2)
    results["conv_predictions"] = (ll.wrap(conv_keras).predict(CONV_X), ll.wrap(conv_torch).predict(channels_first))
    gradcam = ll.explain(conv_keras, CONV_X, "gradcam", layer="conv")
    results["gradcam_keras"] = gradcam.values
    results["gradcam_torch"] = ll.explain(conv_torch, channels_first, "gradcam", layer="1", target=gradcam.target).values
    results["conv_ig_keras"] = ll.explain(conv_keras, CONV_X, "ig", steps=16, target=gradcam.target).values
    results["conv_ig_torch"] = ll.explain(conv_torch, channels_first, "ig", steps=16, target=gradcam.target).values
    try:
        ll.explain(conv_keras, CONV_X, "gradcam", layer="cnv")
    except ll.LeanlensError as error:
        results["misnamed_layer"] = np.array(str(error))
    np.savez(out / "results.npz", **results)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
