"""Small models and inputs shared by the explain tests."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from leanlens.models import SmallResNet

SIZE = 32  # SmallResNet takes any size: 32×32 inputs give 8×8 maps in stage3


def make_resnet(seed: int = 4) -> SmallResNet:
    """A random SmallResNet in eval mode whose BatchNorms are not the identity."""
    torch.manual_seed(seed)
    model = SmallResNet(width=8)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm2d):
                c = bn.num_features
                bn.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                bn.running_var.copy_(0.5 + torch.rand(c, generator=g))
                bn.weight.copy_(0.5 + torch.rand(c, generator=g))
                bn.bias.copy_(0.2 * torch.randn(c, generator=g))
    return model.eval()


def make_images(n: int = 4, seed: int = 0) -> np.ndarray:
    """Noise plus a bright Gaussian blob at a random place, (n, 1, SIZE, SIZE) float32."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, SIZE, SIZE, generator=g)
    yy, xx = torch.meshgrid(torch.arange(SIZE.__float__()), torch.arange(SIZE.__float__()), indexing="ij")
    for i in range(n):
        cy, cx = torch.randint(6, SIZE - 6, (2,), generator=g).tolist()
        x[i, 0] += 3 * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 20)
    return x.numpy()


def logits(model, x) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(np.array(x))).double().numpy()


def assert_close(got, want, rtol=1e-5, atol_rel=1e-5):
    """Elementwise close, with an absolute tolerance relative to the largest |want|."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    scale = max(np.abs(want).max(), 1e-12)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol_rel * scale)


def smooth_baseline() -> np.ndarray:
    """A non-zero, one-sample-shaped baseline (a blurred noise field)."""
    g = torch.Generator().manual_seed(7)
    noise = torch.randn(1, 1, SIZE, SIZE, generator=g)
    return (0.5 * F.avg_pool2d(noise, 5, stride=1, padding=2) + 0.3)[0].numpy()
