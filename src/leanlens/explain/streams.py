"""Per-sample random streams: a sample's noise depends on the seed and the sample, never on its batch.

Methods that draw noise (SmoothGrad's noisy copies, the 'uniform' baseline) draw each
sample's share from a generator of its own, keyed by the seed and the sample's bytes.
So the same sample gets the same explanation whichever batch, shard or position it
comes in: explaining a data set in one process, in chunks, or over Ray workers
(`leanlens.scale`) gives equal results. Two identical samples get identical noise.
The draws are made on the CPU and then moved, so they are also the same on every device.
"""

from __future__ import annotations

import hashlib

import torch

from leanlens.explain.options import generator


def sample_generators(x: torch.Tensor, seed: int) -> list[torch.Generator]:
    """One CPU generator for each sample of `x`, seeded by `seed` and the sample's bytes."""
    generator(seed)  # the seed's check: a bad seed is refused in one line, before any hashing
    flat = x.detach().cpu().contiguous().flatten(1)
    as_bytes = flat.view(torch.uint8) if flat.dtype != torch.bool else flat.to(torch.uint8)
    streams = []
    for row in as_bytes:
        digest = hashlib.blake2b(row.numpy().tobytes(), digest_size=8, key=str(int(seed)).encode()).digest()
        streams.append(torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1))  # a 63-bit seed
    return streams


def sample_noise(x: torch.Tensor, seed: int, draws: int, kind: str = "normal") -> torch.Tensor:
    """(draws, *x.shape) noise, sample i's draws from its own stream; `kind` 'normal' or 'uniform' ([0, 1))."""
    draw = torch.randn if kind == "normal" else torch.rand
    dtype = x.dtype if x.dtype.is_floating_point else torch.float32
    per_sample = [draw((draws,) + x.shape[1:], generator=stream, dtype=dtype) for stream in sample_generators(x, seed)]
    return torch.stack(per_sample, dim=1).to(x.device)
