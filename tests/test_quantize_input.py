"""Post-training quantization takes a bare batch (it needs no labels), checked like any input."""

import numpy as np
import pytest
import torch
from errors_support import one_line

import leanlens as ll
from leanlens.errors import BadInput
from leanlens.models import SmallResNet


def test_a_bare_batch_calibrates_like_the_same_batch_with_labels():
    torch.manual_seed(0)
    model = SmallResNet(width=8).eval()
    x = ll.data.load("lesions", n=32, seed=5).x
    bare, labelled = ll.quantize(model, x), ll.quantize(model, (x, np.zeros(len(x), dtype=int)))
    assert bare.model_bytes == labelled.model_bytes


@pytest.mark.parametrize("batch, message", [
    (np.full((4, 1, 32, 32), np.nan, np.float32), "NaN or inf"),
    (np.zeros(8, np.float32), "batch first"),
    (np.array([["a"]]), "must hold numbers"),
])
def test_a_bad_bare_batch_is_one_line(batch, message):
    with pytest.raises(BadInput, match=message) as error:
        ll.quantize(SmallResNet(width=8).eval(), batch)
    one_line(error)
