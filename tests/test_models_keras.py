"""The Keras 3 adapter against torch autograd on the same weights, in a process of its own.

Keras fixes its backend at import, so one subprocess (`keras_checks.py`) runs every Keras
check on the torch backend and the tests here read its results; TensorFlow's GradientTape
path runs the same checks where tensorflow is installed.
"""

import importlib.util
import sys

import numpy as np
import pytest
from adapters_support import X, keras_results, numpy_mlp

import leanlens as ll
from leanlens.models.keras_model import is_keras_model

BACKENDS = ["torch", pytest.param("tensorflow", marks=pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None, reason="tensorflow is not installed"))]


@pytest.fixture(scope="module", params=BACKENDS)
def results(request):
    return keras_results(request.param)


def test_wrap_recognises_keras_and_states_gradients_and_layers(results):
    assert results["capabilities"].tolist() == ["black-box", "gradients", "layers"]
    np.testing.assert_allclose(results["predictions"], numpy_mlp(X), rtol=1e-5, atol=1e-6)


def test_saliency_is_the_torch_autograd_gradient_of_the_same_weights(results):
    np.testing.assert_allclose(results["saliency"], results["saliency_autograd"], atol=1e-5)
    assert np.abs(results["saliency"]).max() > 0.1  # a real gradient, not zeros on both sides


def test_ig_equals_torch_ig_on_the_same_weights_and_is_complete(results):
    np.testing.assert_allclose(results["ig_keras"], results["ig_torch"], atol=1e-5)
    assert np.abs(results["ig_delta_keras"]).max() < 1e-4


def test_channels_last_images_give_torch_gradients_and_gradcam_on_a_named_layer(results):
    keras_scores, torch_scores = results["conv_predictions"]
    np.testing.assert_allclose(keras_scores, torch_scores, atol=1e-5)
    # IG on (N, H, W, C) images is torch's on (N, C, H, W), axes moved
    np.testing.assert_allclose(results["conv_ig_keras"], results["conv_ig_torch"].transpose(0, 2, 3, 1), atol=1e-6)
    # Grad-CAM on the Keras layer "conv" is torch's on the ReLU after the same convolution, on the image grid
    assert results["gradcam_keras"].shape == (2, 8, 8) and results["gradcam_keras"].max() > 0
    np.testing.assert_allclose(results["gradcam_keras"], results["gradcam_torch"], atol=1e-6)


def test_a_misnamed_layer_is_refused_with_the_closest_name(results):
    assert str(results["misnamed_layer"]) == "the model has no layer named 'cnv' (hint: did you mean 'conv'?)"


def test_wrapping_other_models_never_imports_keras(results):
    assert not results["keras_imported_by_wrap"]
    if "keras" not in sys.modules:  # in this process too, when nothing else imported it
        ll.wrap(numpy_mlp)
        assert not is_keras_model(numpy_mlp) and "keras" not in sys.modules
