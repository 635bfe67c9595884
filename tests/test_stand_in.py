"""An int8 graph explained through its float twin says how closely the twin follows the graph."""

import numpy as np
import pytest
import torch

import leanlens as ll
from leanlens.explain.explanation import Explanation
from leanlens.models import OnnxModel, SmallResNet, TorchModel


@pytest.fixture(scope="module")
def images():
    return ll.data.load("lesions", n=96, seed=3).x


@pytest.fixture(scope="module")
def models(images):
    torch.manual_seed(0)
    fp32 = TorchModel(SmallResNet(width=8).eval())
    return fp32, ll.quantize(fp32, images[:64], calibration_samples=64)


def test_a_gradient_explanation_of_an_int8_graph_carries_its_twins_fidelity(models, images):
    fp32, int8 = models
    x = images[64:]
    exp = ll.explain(int8, x, "gradcam")
    deployed, twin = int8.predict(x), int8.twin.predict(x)
    np.testing.assert_allclose(exp.predictions, deployed, rtol=0, atol=0)
    np.testing.assert_allclose(exp.stand_in_scores, twin, rtol=1e-5, atol=1e-6)
    fidelity = exp.stand_in_fidelity
    assert fidelity.agreement == (twin.argmax(1) == deployed.argmax(1)).mean()
    assert fidelity.max_error == pytest.approx(np.abs(twin - deployed).max(), rel=1e-4)
    assert fidelity.mean_error == pytest.approx(np.abs(twin - deployed).mean(), rel=1e-4)
    assert "stand-in fidelity: top-1 agreement" in str(fidelity)
    # the float model the graph came from is a worse stand-in: int8 rounding visibly moves the scores
    loose = ll.explain(OnnxModel(int8.model_bytes, twin=fp32), x, "gradcam").stand_in_fidelity
    assert loose.mean_error > 2 * fidelity.mean_error


def test_the_deployed_model_explained_itself_has_no_stand_in(models, images):
    fp32, int8 = models
    x = images[64:72]
    assert ll.explain(int8, x, "occlusion", window=8).stand_in_scores is None  # ORT's own forwards
    assert ll.explain(fp32, x, "gradcam").stand_in_fidelity is None


def test_the_stand_in_scores_survive_a_round_trip_through_npz(models, images, tmp_path):
    exp = ll.explain(models[1], images[64:72], "saliency")
    loaded = Explanation.from_npz(exp.to_npz(tmp_path / "e"))
    np.testing.assert_array_equal(loaded.stand_in_scores, exp.stand_in_scores)
    assert loaded.stand_in_fidelity == exp.stand_in_fidelity


def test_twin_layers_and_graph_layers_pair_one_to_one():
    # two layers with the same weights see inputs of different ranges (the second after a ×8 scale),
    # so the graph quantizes them with different input scales: each twin layer must take its own
    torch.manual_seed(0)
    shared = torch.nn.Linear(16, 16)
    second = torch.nn.Linear(16, 16)
    second.load_state_dict(shared.state_dict())

    class Twice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.first, self.second, self.head = shared, second, torch.nn.Linear(16, 3)

        def forward(self, x):
            return self.head(torch.relu(self.second(8 * torch.relu(self.first(x)))))

    x = np.random.default_rng(0).normal(size=(64, 16)).astype(np.float32)
    int8 = ll.quantize(Twice().eval(), x)
    scales = [int8.twin.module.get_submodule(name).scale for name in ("first", "second")]
    assert scales[1] > 2 * scales[0]
    assert ll.explain(int8, x, "saliency").stand_in_fidelity.agreement == 1.0
