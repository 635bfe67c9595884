"""Small reference networks used by the demo and the tests."""

from __future__ import annotations

from torch import nn


class ResidualBlock(nn.Module):
    """Two 3×3 convolutions with a skip connection (He et al., 2016).

    Each activation is its own module: quantizers and hooks need one module per use site.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(x + self.bn2(self.conv2(out)))


def _down(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


class SmallResNet(nn.Module):
    """A ResNet-style CNN for 1×64×64 images: 64×64 → 32×32 → 16×16 feature maps.

    The last residual block works at 16×16, so Grad-CAM maps have 16×16 cells.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, width: int = 32):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.stage1 = ResidualBlock(width)
        self.down2 = _down(width, 2 * width)
        self.stage2 = ResidualBlock(2 * width)
        self.stage3 = ResidualBlock(2 * width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.stage1(self.stem(x))
        x = self.stage3(self.stage2(self.down2(x)))
        return self.head(self.flatten(self.pool(x)))
