"""One small MLP, the same weights in every framework leanlens adapts, for cross-adapter tests.

softmax(tanh(x W1 + b1) W2 + b2) over 6 features and 3 classes: as a NumPy function, a torch
module, its ONNX export, a scikit-learn MLPClassifier whose weights are set to these, and (in
`keras_checks.py`, a separate process) a Keras model.
"""

import functools
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

FEATURES, HIDDEN, CLASSES = 6, 8, 3


def weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"w1": rng.normal(size=(FEATURES, HIDDEN)).astype(np.float32),
            "b1": rng.normal(size=HIDDEN).astype(np.float32) * 0.1,
            "w2": rng.normal(size=(HIDDEN, CLASSES)).astype(np.float32),
            "b2": rng.normal(size=CLASSES).astype(np.float32) * 0.1}


def rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, FEATURES)).astype(np.float32)


X, BACKGROUND = rows(3, 1), rows(5, 2)


def numpy_mlp(x) -> np.ndarray:
    w = weights()
    logits = np.tanh(np.asarray(x, dtype=np.float64) @ w["w1"] + w["b1"]) @ w["w2"] + w["b2"]
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    return shifted / shifted.sum(1, keepdims=True)


def torch_mlp() -> nn.Module:
    w = weights()
    module = nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, CLASSES), nn.Softmax(dim=1))
    with torch.no_grad():
        module[0].weight.copy_(torch.as_tensor(w["w1"].T))
        module[0].bias.copy_(torch.as_tensor(w["b1"]))
        module[2].weight.copy_(torch.as_tensor(w["w2"].T))
        module[2].bias.copy_(torch.as_tensor(w["b2"]))
    return module.eval()


def sklearn_mlp():
    """An MLPClassifier fitted for one step (to set its classes and shapes), then given these weights."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    w = weights()
    clf = MLPClassifier(hidden_layer_sizes=(HIDDEN,), activation="tanh", max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(rows(30, 3), np.arange(30) % CLASSES)
    clf.coefs_ = [w["w1"].astype(np.float64), w["w2"].astype(np.float64)]
    clf.intercepts_ = [w["b1"].astype(np.float64), w["b2"].astype(np.float64)]
    return clf


# Every forward-only method with the options the cross-adapter tests run it with.
FORWARD_METHODS = {
    "occlusion": {},
    "shapley": {},
    "kernelshap": {"samples": 40},
    "lime": {"samples": 200},
}


# Keras' backends, each checked in a process of its own; TensorFlow's where it is installed
KERAS_BACKENDS = ["torch", pytest.param("tensorflow", marks=pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None, reason="tensorflow is not installed"))]


@functools.cache
def keras_results(backend: str) -> dict[str, np.ndarray]:
    """What `keras_checks.py` computes in a fresh process on Keras' `backend`, run once a session."""
    here = Path(__file__).parent
    env = {**os.environ, "KERAS_BACKEND": backend,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(here), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as out:
        run = subprocess.run([sys.executable, str(here / "keras_checks.py"), out], env=env, capture_output=True,
                             check=False, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        with np.load(Path(out) / "results.npz") as archive:
            return {name: archive[name] for name in archive.files}
