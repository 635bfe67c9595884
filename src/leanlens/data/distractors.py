"""Bright spots that are not lesions, for the hard lesions setting.

Two kinds, as bright as lesions but shaped otherwise: small round dots (like calcifications)
and thin streaks (like vessels). A lesion is a wider disc with a flat top and a soft rim; a
distractor peaks at its centre and fades all the way to its edge. So brightness alone cannot
tell them apart: a model must learn the lesion's shape, and an explanation can point at the
wrong spot.
"""

from __future__ import annotations

import numpy as np

DOT_RADIUS = (1.5, 2.5)  # semi-axes of a dot, in pixels of a 64-pixel image
STREAK_LENGTH = (5.0, 8.0)  # half-length of a streak
STREAK_WIDTH = (1.2, 1.8)  # half-width of a streak
MARGIN = 2.0  # pixels between a spot's edge and the image border
GAP = 1.0  # pixels kept free between a spot's edge and the lesion's outermost lit pixel
TRIES = 100  # redraws of a spot that would touch the lesion


def distractor_maps(rng: np.random.Generator, count: tuple[int, int], peak: tuple[float, float], size: int,
                    keep_clear: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Added-intensity maps (m, size, size) with count[0]..count[1] spots each, peaks in `peak`.

    `keep_clear` = (cx, cy, extent), one a map: no spot comes within GAP pixels of the disc
    of radius `extent` around (cx, cy), so a lesion drawn there never touches a spot.
    """
    cx, cy, extent = (np.asarray(a, np.float32)[:, None] for a in keep_clear)  # (m, 1): one column a slot
    m, slots = len(cx), count[1]
    scale = np.float32(size / 64)
    active = np.arange(slots) < rng.integers(count[0], count[1] + 1, (m, 1))
    streak = rng.random((m, slots)) < 0.5
    dot = rng.uniform(*DOT_RADIUS, (m, slots))
    long = np.where(streak, rng.uniform(*STREAK_LENGTH, (m, slots)), dot).astype(np.float32) * scale
    wide = np.where(streak, rng.uniform(*STREAK_WIDTH, (m, slots)), dot).astype(np.float32) * scale
    heading = rng.uniform(0.0, np.pi, (m, slots)).astype(np.float32)
    brightness = rng.uniform(*peak, (m, slots)).astype(np.float32) * active
    # A spot lies within its half-length of its centre; that radius is what must stay clear.
    sx, sy, placed = _centres(rng, long, size, (cx, cy, extent + long + GAP))
    return _render(size, sx, sy, long, wide, heading, brightness * placed)


def _centres(rng: np.random.Generator, reach: np.ndarray, size: int,
             avoid: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spot centres inside the image and farther than avoid's radius from its centre, and
    whether each was placed (always, bar a spot that found no room in TRIES draws)."""
    cx, cy, radius = avoid
    low, high = reach + MARGIN, size - 1 - reach - MARGIN
    sx = rng.uniform(low, high).astype(np.float32)
    sy = rng.uniform(low, high).astype(np.float32)
    for _ in range(TRIES):
        touching = np.hypot(sx - cx, sy - cy) <= radius
        if not touching.any():
            break
        sx[touching] = rng.uniform(low[touching], high[touching])
        sy[touching] = rng.uniform(low[touching], high[touching])
    # At 64 px a spot runs out of tries with odds below 1e-30; on tiny images it is left out.
    return sx, sy, np.hypot(sx - cx, sy - cy) > radius


def _render(size: int, sx, sy, long, wide, heading, brightness) -> np.ndarray:
    """Sum over slots of brightness * (1 - r^2)^2, r the elliptical radius (1 at the spot's edge)."""
    grid = np.arange(size, dtype=np.float32)
    dx = grid[None, None, None, :] - sx[..., None, None]
    dy = grid[None, None, :, None] - sy[..., None, None]
    cos, sin = np.cos(heading)[..., None, None], np.sin(heading)[..., None, None]
    along, across = dx * cos + dy * sin, dy * cos - dx * sin
    r2 = (along / long[..., None, None]) ** 2 + (across / wide[..., None, None]) ** 2
    profile = np.clip(1 - r2, 0.0, None) ** 2
    return (brightness[..., None, None] * profile).sum(axis=1)
