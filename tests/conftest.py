"""Fixtures shared by several test files."""

import pytest
import torch
from explain_support import make_images, make_resnet


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run far faster on one intra-op thread than on two contending ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def resnet():
    return make_resnet()


@pytest.fixture(scope="module")
def images():
    return make_images()
