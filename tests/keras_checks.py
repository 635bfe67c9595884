"""Run in a fresh process with KERAS_BACKEND set (Keras fixes its backend at import):
`python keras_checks.py OUT_DIR`. Builds Keras models with the weights of torch ones and
writes what leanlens computes on both to OUT_DIR/results.npz; the tests compare them.

Also records whether wrapping objects that are not Keras models imported keras, and what
`.keras` files give through `ll.wrap`, `ll.load` and the command line (safe mode on).
"""

import sys
import warnings
import zipfile
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


def keras_mlp(api=keras):
    """The MLP in Keras; `api` is `keras` or, on the TensorFlow backend, `tf.keras`."""
    w = weights()
    model = api.Sequential([api.Input((X.shape[1],)), api.layers.Dense(8, activation="tanh"),
                            api.layers.Dense(3, activation="softmax")])
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
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf_model = ll.wrap(keras_mlp(tf.keras))
        results["tf_keras"] = np.array([type(tf_model).__name__, tf_model.backend])
        results["tf_keras_ig"] = ll.explain(tf_model, X, "ig", steps=32).values
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
    results.update(keras_files(out, conv_keras, CONV_X))
    np.savez(out / "results.npz", **results)


def refusal(load, path) -> np.ndarray:
    """The one-line message (with its class name) that loading `path` is refused with."""
    try:
        load(path)
    except ll.LeanlensError as error:
        return np.array(f"{type(error).__name__}: {error}")
    return np.array("loaded")


def keras_files(out: Path, network, x) -> dict[str, np.ndarray]:
    """A saved model through each door, a Lambda model and a damaged file refused by each."""
    from typer.testing import CliRunner

    from leanlens.cli import app

    network.save(out / "cnn.keras")
    found = {"file/wrap": ll.wrap(str(out / "cnn.keras")).predict(x), "file/load": ll.load(out / "cnn.keras").predict(x)}
    np.savez(out / "images.npz", x=x, y=np.zeros(len(x), dtype=np.int64))
    run = CliRunner().invoke(app, ["explain", str(out / "cnn.keras"), str(out / "images.npz"), "--method", "ig",
                                   "--option", "steps=16", "--out", str(out / "ig.npz")])
    found["file/cli_exit"] = np.array(run.exit_code)
    found["file/cli_ig"] = np.load(out / "ig.npz")["values"] if run.exit_code == 0 else np.array(run.output)
    found["file/direct_ig"] = ll.explain(network, x, "ig", steps=16).values
    keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda t: t * 2), keras.layers.Dense(2)]).save(
        out / "lambda.keras")
    damaged = (out / "cnn.keras").read_bytes()
    (out / "damaged.keras").write_bytes(damaged[: len(damaged) // 2])
    with zipfile.ZipFile(out / "foreign.keras", "w") as archive:  # a zip, but not Keras' layout
        archive.writestr("notes.txt", "not a model")
    for name in ("lambda", "damaged", "foreign"):
        found[f"file/{name}/wrap"] = refusal(ll.wrap, str(out / f"{name}.keras"))
        found[f"file/{name}/load"] = refusal(ll.load, out / f"{name}.keras")
        cli = CliRunner().invoke(app, ["explain", str(out / f"{name}.keras"), str(out / "images.npz"),
                                       "--out", str(out / f"{name}.npz")])
        found[f"file/{name}/cli"] = np.array([str(cli.exit_code), cli.output])
    return found


def leanlens_warnings(run) -> np.ndarray:
    """The warnings raised from leanlens' own code while `run()` runs (Keras' and TF's are theirs)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    source = str(Path(ll.__file__).parent)
    return np.array([f"{w.filename}:{w.lineno}: {w.message}" for w in caught if w.filename.startswith(source)], dtype=str)


if __name__ == "__main__":
    path = Path(sys.argv[1])
    found = leanlens_warnings(lambda: main(path))
    with np.load(path / "results.npz") as archive:
        np.savez(path / "results.npz", **{name: archive[name] for name in archive.files}, leanlens_warnings=found)
