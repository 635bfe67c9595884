"""The built-in synthetic medical set: textured chest-film-like images, half with one lesion.

The ground truth is known exactly: each mask marks the pixels the lesion brightened, so
explanation methods can be scored against it. Two settings: "easy" (large, bright lesions
on a clean film) and "hard" (small, faint lesions among bright spots that are not lesions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leanlens.data.dataset import Dataset
from leanlens.data.distractors import distractor_maps
from leanlens.errors import BadInput, BadOption

CLASSES = ("clear", "lesion")
MASK_LEVEL = 0.05  # a pixel belongs to the lesion where it adds more than 5 % of the lesion's peak
EDGE = 1.5  # width in pixels of the lesion's soft rim
MARGIN = 2.0  # pixels between the lesion's outermost lit pixel and the image border
CHUNK = 256  # images rendered at once: large enough for vectorisation, small enough to stay in cache
HARMONICS = np.arange(2, 5)  # angular frequencies that make the lesion outline irregular


@dataclass(frozen=True)
class Setting:
    """How hard the set is. Lengths are in pixels of a 64-pixel image and scale with `size`;
    intensities are added to a film whose level is about 0.3 (ribs add up to 0.12)."""

    radius: tuple[float, float]  # lesion base radius before its +-36 % wobble and 1.5 px rim
    peak: tuple[float, float]  # intensity a lesion adds at its centre (65 % of it at its outline)
    distractors: tuple[int, int]  # how many non-lesion bright spots an image holds, both ends included


SETTINGS = {
    "easy": Setting(radius=(4.0, 9.0), peak=(0.3, 0.5), distractors=(0, 0)),
    "hard": Setting(radius=(3.0, 5.0), peak=(0.14, 0.24), distractors=(1, 3)),
}


@dataclass(frozen=True)
class Film:
    """The layers of a rendered set, each (n, size, size): the image is
    clip(background + distractors + lesion, 0, 1) and `y` says which images hold a lesion."""

    background: np.ndarray
    distractors: np.ndarray  # bright spots that are not lesions, in both classes alike (hard setting)
    lesion: np.ndarray  # the intensity the lesion adds; all zero for class 0
    y: np.ndarray


def lesions(n: int = 5000, seed: int = 0, size: int = 64, difficulty: str = "easy") -> Dataset:
    """`n` images of shape (1, size, size) in [0, 1]; exactly n // 2 hold one lesion (label 1).

    Parameters
    ----------
    difficulty : "easy" (default): one lesion of radius 4-9 px adding 0.3-0.5 on a clean film.
        "hard": radius 3-5 px adding only 0.14-0.24, and every image, with or without a lesion,
        holds 1-3 distractors (dots and streaks as bright as lesions, never touching one), so
        a model must tell a lesion by its shape. Masks mark the lesion alone (see `SETTINGS`).
    """
    film = render_film(n, seed, size, difficulty)
    x = np.clip(film.background + film.distractors + film.lesion, 0.0, 1.0)[:, None]
    name = "lesions" if difficulty == "easy" else f"lesions-{difficulty}"
    return Dataset(x, film.y, lesion_masks(film.lesion), name=name, classes=CLASSES)


def render_lesions(n: int = 5000, seed: int = 0, size: int = 64,
                   difficulty: str = "easy") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The parts `lesions` composes: (background, lesion_map, y), maps of shape (n, size, size).

    `lesion_map` is the intensity the lesion adds (all zero for class 0); the image is
    clip(background + lesion_map, 0, 1). In the hard setting the background includes the
    distractors; `render_film` keeps them apart.
    """
    film = render_film(n, seed, size, difficulty)
    return film.background + film.distractors, film.lesion, film.y


def render_film(n: int = 5000, seed: int = 0, size: int = 64, difficulty: str = "easy") -> Film:
    """Every layer of the set `lesions(n, seed, size, difficulty)` shows."""
    _check_args(n, size)
    setting = _setting(difficulty)
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) < n // 2).astype(np.int64)
    film = Film(*(np.zeros((n, size, size), np.float32) for _ in range(3)), y)
    for start in range(0, n, CHUNK):
        part = slice(start, start + CHUNK)
        film.background[part] = _background(rng, len(y[part]), size)
        if setting.distractors == (0, 0):
            # The easy setting draws exactly what it always drew, so its sets stay the same.
            sick = np.flatnonzero(y[part]) + start
            film.lesion[sick] = _lesion_maps(rng, len(sick), size)
        else:
            _spotted_chunk(rng, setting, film, part)
    return film


def _spotted_chunk(rng: np.random.Generator, setting: Setting, film: Film, part: slice) -> None:
    """Lesions and distractors for the images in `part`, written into `film`.

    Every image draws a lesion, and its distractors keep clear of it; only class 1 keeps the
    lesion. So the distractors of both classes follow one distribution and carry no label cue.
    """
    m, size = len(film.y[part]), film.lesion.shape[-1]
    maps, (cx, cy, extent) = _draw_lesions(rng, m, size, setting.radius, setting.peak)
    film.lesion[part] = maps * film.y[part][:, None, None]
    film.distractors[part] = distractor_maps(rng, setting.distractors, setting.peak, size,
                                             keep_clear=(cx.reshape(-1), cy.reshape(-1), extent.reshape(-1)))


def lesion_masks(lesion_map: np.ndarray) -> np.ndarray:
    """Boolean masks of the pixels where each lesion adds more than MASK_LEVEL of its peak."""
    peak = lesion_map.max(axis=(-2, -1), keepdims=True)
    # An image without a lesion has peak 0, and `0 > 0` leaves its mask empty.
    return lesion_map > MASK_LEVEL * peak


def _setting(difficulty: str) -> Setting:
    if not isinstance(difficulty, str) or difficulty not in SETTINGS:
        raise BadOption(f"difficulty={difficulty!r} is not a setting of the lesions set",
                        "use difficulty='easy' or difficulty='hard'")
    return SETTINGS[difficulty]


def _check_args(n: int, size: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise BadInput(f"n must be a positive integer, got {n!r}", "use e.g. n=5000")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16:
        # Below 16 px the largest lesion plus its margin no longer fits inside the image.
        raise BadInput(f"size must be an integer of at least 16, got {size!r}", "use e.g. size=64")


def _axes(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Column and row coordinates in [-0.5, 0.5], shaped to broadcast over (n, size, size)."""
    grid = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    return grid[None, None, :], grid[None, :, None]


def _column(rng: np.random.Generator, m: int, low: float, high: float) -> np.ndarray:
    """One uniform draw per image, shaped (m, 1, 1) to broadcast over pixels."""
    return rng.uniform(low, high, (m, 1, 1)).astype(np.float32)


def _background(rng: np.random.Generator, m: int, size: int) -> np.ndarray:
    """Film without lesion: exposure gradient + rib bands + tissue texture + pixel noise."""
    u, v = _axes(size)
    angle = _column(rng, m, 0.0, 2 * np.pi)
    strength = _column(rng, m, 0.04, 0.16)
    image = _column(rng, m, 0.22, 0.36) + strength * (np.cos(angle) * u + np.sin(angle) * v)
    image = image + _ribs(rng, m, u, v) + _texture(rng, m, size)
    image += _white(rng, m, size) * np.float32(0.015)
    return image


def _ribs(rng: np.random.Generator, m: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bright curved bands: a periodic stripe pattern whose rows bend along a sinusoidal arc."""
    period = _column(rng, m, 1 / 6.5, 1 / 4.5)
    # Less than one cycle across the width, so each band reads as an arc rather than a wave.
    arc = _column(rng, m, 0.05, 0.15) * np.sin(2 * np.pi * _column(rng, m, 0.3, 0.6) * u
                                                + _column(rng, m, 0.0, 2 * np.pi))
    tilt = _column(rng, m, -0.25, 0.25) * u
    phase = 2 * np.pi * (v + arc + tilt) / period + _column(rng, m, 0.0, 2 * np.pi)
    # Raising the raised cosine to a power narrows the bright part into rib-like bands.
    band = ((1 + np.cos(phase)) / 2) ** 3
    return _column(rng, m, 0.06, 0.12) * band


def _texture(rng: np.random.Generator, m: int, size: int) -> np.ndarray:
    """Smooth mottling at two scales: blurred white noise, rescaled so each scale has a set spread."""
    texture = np.zeros((m, size, size), np.float32)
    for sigma, spread in ((1.0 * size / 64, 0.02), (4.0 * size / 64, 0.035)):
        blur = _blur_matrix(size, sigma)
        # Blurring white noise shrinks its std to sum(g**2) for the separable kernel g; undo that.
        gain = np.float32(spread / np.square(blur[size // 2]).sum())
        # Rows then columns by matrix products: a separable Gaussian blur at BLAS speed.
        texture += (blur @ _white(rng, m, size) @ blur.T) * gain
    return texture


def _white(rng: np.random.Generator, m: int, size: int) -> np.ndarray:
    """Zero-mean unit-variance white noise; uniform because it draws ~4x faster than normal."""
    return (rng.random((m, size, size), dtype=np.float32) - np.float32(0.5)) * np.float32(np.sqrt(12))


def _blur_matrix(size: int, sigma: float) -> np.ndarray:
    """Gaussian smoothing as a (size, size) matrix; rows sum to 1 so borders keep their level."""
    offsets = np.arange(size, dtype=np.float32)
    weights = np.exp(-0.5 * ((offsets[:, None] - offsets[None, :]) / np.float32(sigma)) ** 2)
    return weights / weights.sum(axis=1, keepdims=True)


def _lesion_maps(rng: np.random.Generator, k: int, size: int) -> np.ndarray:
    """`k` added-intensity maps of the easy setting (see `_draw_lesions`)."""
    easy = SETTINGS["easy"]
    return _draw_lesions(rng, k, size, easy.radius, easy.peak)[0]


def _draw_lesions(rng: np.random.Generator, k: int, size: int, radius: tuple[float, float],
                  peak: tuple[float, float]) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """`k` added-intensity maps, each one irregular soft-edged bright blob fully inside the image,
    and where they lie: (cx, cy, extent), the centre and the radius beyond which nothing is lit."""
    out = np.zeros((k, size, size), np.float32)
    if k == 0:
        return out, (np.zeros((0, 1, 1), np.float32),) * 3
    radius0 = _column(rng, k, *radius) * np.float32(size / 64)
    wobble = rng.uniform(0.0, 0.12, (k, 1, 1, len(HARMONICS))).astype(np.float32)
    turn = rng.uniform(0.0, 2 * np.pi, (k, 1, 1, len(HARMONICS))).astype(np.float32)
    # The outline never passes radius0 * (1 + sum of wobbles); the rim adds EDGE / 2 beyond it.
    extent = radius0 * (1 + wobble.sum(axis=-1)) + EDGE / 2
    cx = rng.uniform(extent + MARGIN, size - 1 - extent - MARGIN).astype(np.float32)
    cy = rng.uniform(extent + MARGIN, size - 1 - extent - MARGIN).astype(np.float32)
    brightness = _column(rng, k, *peak)
    # Only a window around each lesion can be lit, so render there instead of the whole image.
    rows, cols = _window(cy, extent, size), _window(cx, extent, size)
    dx = cols[:, None, :] - cx
    dy = rows[:, :, None] - cy
    distance, angle = np.hypot(dx, dy), np.arctan2(dy, dx)
    outline = radius0 * (1 + (wobble * np.cos(HARMONICS * angle[..., None] + turn)).sum(axis=-1))
    local = brightness * _rim(distance, outline) * _dome(distance, outline)
    out[np.arange(k)[:, None, None], rows[:, :, None].astype(int), cols[:, None, :].astype(int)] = local
    return out, (cx, cy, extent)


def _window(centre: np.ndarray, extent: np.ndarray, size: int) -> np.ndarray:
    """Pixel coordinates (k, side) of a square window covering centre +- extent, inside the image."""
    # Half-width ceil(extent) + 1 covers the extent whatever the centre's fractional part.
    half = int(np.ceil(extent.max())) + 1
    side = min(size, 2 * half + 1)
    start = np.clip(np.floor(centre.reshape(-1)) - half, 0, size - side)
    return (start[:, None] + np.arange(side)).astype(np.float32)


def _rim(distance: np.ndarray, outline: np.ndarray) -> np.ndarray:
    """1 inside the outline, 0 beyond it, a smoothstep across EDGE pixels (exactly 0 outside)."""
    t = np.clip((outline + EDGE / 2 - distance) / EDGE, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _dome(distance: np.ndarray, outline: np.ndarray) -> np.ndarray:
    """A mild bulge: full intensity at the centre, 65 % at the outline, like a dense nodule."""
    return 0.65 + 0.35 * np.clip(1 - (distance / outline) ** 2, 0.0, 1.0)
