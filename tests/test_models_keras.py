"""The Keras 3 adapter against torch autograd on the same weights, in a process of its own.

Keras fixes its backend at import, so one subprocess (`keras_checks.py`) runs every Keras
check on the torch backend and the tests here read its results; TensorFlow's GradientTape
path runs the same checks where tensorflow is installed.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from adapters_support import KERAS_BACKENDS, X, keras_results, numpy_mlp

import leanlens as ll
from leanlens.models.keras_model import is_keras_model


@pytest.fixture(scope="module", params=KERAS_BACKENDS)
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


def test_a_tf_keras_model_is_keras_3_and_gives_torch_s_ig(results):
    if "tf_keras" not in results:
        pytest.skip("tf.keras belongs to the TensorFlow backend's run")
    assert results["tf_keras"].tolist() == ["KerasModel", "tensorflow"]
    np.testing.assert_allclose(results["tf_keras_ig"], results["ig_torch"], atol=1e-5)


def test_explaining_keras_models_raises_no_warning_from_leanlens(results):
    # TF hands back read-only arrays; torch warns when one becomes a tensor without a copy
    assert results["leanlens_warnings"].tolist() == []


def test_a_misnamed_layer_is_refused_with_the_closest_name(results):
    assert str(results["misnamed_layer"]) == "the model has no layer named 'cnv' (hint: did you mean 'conv'?)"


def test_wrapping_other_models_never_imports_keras(results):
    assert not results["keras_imported_by_wrap"]
    if "keras" not in sys.modules:  # in this process too, when nothing else imported it
        ll.wrap(numpy_mlp)
        assert not is_keras_model(numpy_mlp) and "keras" not in sys.modules


def test_a_keras_file_loads_through_wrap_load_and_the_command_line(results):
    np.testing.assert_array_equal(results["file/wrap"], results["conv_predictions"][0])
    np.testing.assert_array_equal(results["file/load"], results["conv_predictions"][0])
    assert results["file/cli_exit"] == 0  # `leanlens explain cnn.keras images.npz --method ig`
    np.testing.assert_allclose(results["file/cli_ig"], results["file/direct_ig"], atol=1e-7)
    assert np.abs(results["file/direct_ig"]).max() > 1e-3


@pytest.mark.parametrize("name, refused", [
    ("lambda", "UnsafeFile: lambda.keras holds Python code (a Lambda layer or similar) that loading would run"),
    ("damaged", "BadInput: damaged.keras is not a readable .keras file (not a zip archive)"),
    ("foreign", "BadInput: cannot rebuild the model in foreign.keras: "),
])
def test_unsafe_or_damaged_keras_files_are_refused_in_one_line_everywhere(results, name, refused):
    for door in ("wrap", "load"):
        message = str(results[f"file/{name}/{door}"])
        assert message.startswith(refused) and "(hint: " in message and "\n" not in message
    exit_code, output = results[f"file/{name}/cli"].tolist()
    assert exit_code == "2" and output.startswith("error: " + refused.split(": ", 1)[1])
    assert output.count("\n") == 1 and "Traceback" not in output


def test_a_keras_file_without_its_backend_installed_is_refused_in_one_line(tmp_path):
    """KERAS_BACKEND=tensorflow where tensorflow cannot be imported (hidden from this child process)."""
    (tmp_path / "model.keras").write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip archive
    code = ("import sys; sys.modules['tensorflow'] = None; import leanlens as ll\n"
            "try: ll.wrap(sys.argv[1])\nexcept ll.LeanlensError as e: print(type(e).__name__, e)")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "model.keras")], capture_output=True, text=True,
                         env={**os.environ, "KERAS_BACKEND": "tensorflow"}, timeout=300, check=True)
    assert run.stdout.startswith("MissingCapability reading model.keras needs Keras 3 and its backend")
    assert "pip install 'leanlens[tensorflow]'" in run.stdout and run.stdout.count("\n") == 1
