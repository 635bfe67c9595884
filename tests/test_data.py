"""Tests for leanlens.data: the Dataset container, the lesion generator and the loaders."""

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation, label, uniform_filter
from sklearn.linear_model import LogisticRegression
from torch.utils.data import DataLoader, TensorDataset

from leanlens.data import (
    DATASETS,
    Dataset,
    as_dataset,
    lesions,
    load,
    load_npz,
    render_lesions,
)
from leanlens.data.synthetic import _lesion_maps, lesion_masks
from leanlens.errors import BadInput, UnknownMethod


@pytest.fixture(scope="module")
def parts():
    return render_lesions(400, seed=1)


@pytest.fixture(scope="module")
def film():
    return lesions(400, seed=1)


@pytest.fixture(scope="module")
def sick(parts):
    """(background, lesion_map) of the class-1 images only."""
    return parts[0][parts[2] == 1], parts[1][parts[2] == 1]


def _box(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow each (N, H, W) mask by `pixels` in every direction, image by image."""
    return binary_dilation(mask, structure=np.ones((1, 3, 3), bool), iterations=pixels)


def test_lesions_compose_background_and_lesion(parts, film):
    background, lesion_map, y = parts
    np.testing.assert_array_equal(film.y, y)
    np.testing.assert_allclose(film.x[:, 0], np.clip(background + lesion_map, 0, 1))
    np.testing.assert_array_equal(film.masks, lesion_masks(lesion_map))
    assert film.name == "lesions" and film.classes == ("clear", "lesion")


class ScriptedDraws:
    """Stands in for the generator: each `uniform(low, high, size)` returns the next scripted
    value (checked to lie in [low, high]), so a lesion can be drawn where we choose."""

    def __init__(self, *values):
        self.values = list(values)

    def uniform(self, low, high, size=None):
        value = self.values.pop(0)
        assert np.all(low <= value) and np.all(value <= high)
        return np.full(size if size is not None else np.shape(low), value, dtype=np.float64)


def test_mask_of_a_round_lesion_is_the_disc_worked_out_by_hand():
    """Radius 5, no wobble, centre at column 20, row 30 of a 64-pixel image. The lesion adds
    peak · rim · dome: the dome is 0.65 at and beyond the outline, the rim a smoothstep s(t)
    with t = (5.75 - d) / 1.5. The mask keeps what adds more than 5 % of the peak (reached at
    the centre pixel): beyond the outline 0.65 s(t) > 0.05, so s(t) > 1/13, t > 0.168,
    d < 5.50. Lattice points: d² = 29 (5.39) is in, d² = 32 (5.66) out; d² <= 29 holds for
    11 + 2 (11 + 11 + 9 + 7 + 5) = 97 pixels (columns at offsets 0, ±1, ..., ±5)."""
    radius, no_wobble, no_turn, column, row, peak = 5.0, 0.0, 0.0, 20.0, 30.0, 0.4
    lesion_map = _lesion_maps(ScriptedDraws(radius, no_wobble, no_turn, column, row, peak), 1, 64)
    rows, cols = np.mgrid[:64, :64]
    disc = (rows - 30) ** 2 + (cols - 20) ** 2 <= 29
    assert lesion_map.max() == pytest.approx(0.4)
    np.testing.assert_array_equal(lesion_masks(lesion_map)[0], disc)
    assert disc.sum() == 97


def test_masks_mark_exactly_the_one_lesion_of_class_one(parts, film):
    _, lesion_map, y = parts
    masks, sick_map = film.masks[y == 1], lesion_map[y == 1]
    assert not lesion_map[y == 0].any() and not film.masks[y == 0].any()
    inside = (sick_map * masks).sum(axis=(1, 2)) / sick_map.sum(axis=(1, 2))
    assert inside.min() >= 0.99 and not (masks & (sick_map == 0)).any()
    area = masks.sum(axis=(1, 2))
    # Radius 4..9 px with a +-36 % wobble: roughly pi*2.5**2 to pi*12.5**2 pixels; sizes really vary.
    assert area.min() >= 20 and area.max() <= 500 and area.std() > 20
    # The dome's top falls between pixels, so the brightest pixel can sit a little below 0.3.
    peak = sick_map.max(axis=(1, 2))
    assert peak.min() >= 0.28 and peak.max() <= 0.5 + 1e-6


def _disc_overlap(mask: np.ndarray) -> float:
    """IoU of a mask with the disc of equal area at its centroid: ~0.99 for a pixelated disc."""
    rows, cols = np.nonzero(mask)
    radius = np.sqrt(len(rows) / np.pi)
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    disc = (yy - rows.mean()) ** 2 + (xx - cols.mean()) ** 2 <= radius**2
    return (disc & mask).sum() / (disc | mask).sum()


def test_lesion_is_one_irregular_blob_inside_the_image(sick, film):
    _, lesion_map = sick
    border = np.ones((64, 64), bool)
    border[2:-2, 2:-2] = False
    assert not ((lesion_map > 0) & border).any()
    masks = film.masks[film.y == 1]
    # Spread over the image, not always at the centre.
    rows = np.array([np.nonzero(m)[0].mean() for m in masks])
    assert rows.min() < 20 and rows.max() > 44
    assert all(label(m)[1] == 1 for m in masks[:50])
    overlap = np.array([_disc_overlap(m) for m in masks])
    assert overlap.mean() < 0.95 and overlap.min() > 0.6  # wobbly outlines, yet compact blobs


def test_lesion_is_brighter_than_the_ring_around_it(film):
    images, masks = film.x[film.y == 1, 0], film.masks[film.y == 1]
    ring = _box(masks, 4) & ~_box(masks, 1)
    inside = (images * masks).sum(axis=(1, 2)) / masks.sum(axis=(1, 2))
    around = (images * ring).sum(axis=(1, 2)) / ring.sum(axis=(1, 2))
    assert (inside > around).mean() >= 0.98 and (inside - around).mean() > 0.2


def test_background_is_a_textured_film_not_a_flat_field(sick):
    background, _ = sick
    assert 0.15 < background.mean() < 0.5
    spread = background.reshape(len(background), -1).std(axis=1)
    assert spread.min() > 0.02  # gradient, ribs and texture
    # Neighbouring pixels correlate (smooth structure), unlike pure pixel noise.
    flat = background - background.mean(axis=(1, 2), keepdims=True)
    corr = (flat[:, :, 1:] * flat[:, :, :-1]).mean() / (flat * flat).mean()
    assert corr > 0.8
    # Ribs run roughly horizontally: half a rib period down changes more than the same step across.
    down = np.abs(background[:, 5:] - background[:, :-5]).mean()
    across = np.abs(background[:, :, 5:] - background[:, :, :-5]).mean()
    assert down > 1.25 * across
    # Texture adds structure a few pixels wide: steps of 3 px vary more than pixel noise alone allows.
    step1 = np.var(background[:, :, 1:] - background[:, :, :-1])
    step3 = np.var(background[:, :, 3:] - background[:, :, :-3])
    assert step3 > 2.0 * step1


def test_a_local_contrast_feature_separates_the_classes_but_mean_brightness_does_not():
    data = lesions(600, seed=2)
    images = data.x[:, 0]
    blurred = uniform_filter(images, size=(1, 5, 5))
    contrast = blurred.max(axis=(1, 2)) - np.median(images.reshape(len(images), -1), axis=1)
    brightness = images.mean(axis=(1, 2))
    scores = [LogisticRegression().fit(f[:400, None], data.y[:400]).score(f[400:, None], data.y[400:])
              for f in (contrast, brightness)]
    assert scores[0] >= 0.85 and scores[1] < 0.7


def test_lesions_are_deterministic_per_seed():
    a, b, c = lesions(40, seed=3), lesions(40, seed=3), lesions(40, seed=4)
    for field in ("x", "y", "masks"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.x, c.x)


def test_full_size_set_has_the_right_shapes_and_balance():
    data = lesions(5000)
    assert data.x.shape == (5000, 1, 64, 64) and data.x.dtype == np.float32
    assert data.y.shape == (5000,) and data.y.dtype == np.int64 and data.y.sum() == 2500
    assert data.masks.shape == (5000, 64, 64) and data.masks.dtype == bool
    assert data.x.min() >= 0 and data.x.max() <= 1
    assert 0 < data.y[:100].sum() < 100  # shuffled, not sorted by class
    assert (data.masks.any(axis=(1, 2)) == (data.y == 1)).all()


def test_other_sizes_scale_the_lesion():
    _, lesion_map, y = render_lesions(30, seed=0, size=32)
    assert lesion_map.shape == (30, 32, 32) and y.sum() == 15
    area = (lesion_map[y == 1] > 0).sum(axis=(1, 2))
    assert area.max() < 32 * 32 / 4
    assert lesions(7).y.sum() == 3


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"n": 2.5}, {"size": 8}, {"size": "64"}])
def test_lesions_rejects_bad_arguments(kwargs):
    with pytest.raises(BadInput, match="hint"):
        lesions(**{"n": 10, **kwargs})


def _toy(n: int = 20) -> Dataset:
    x = np.arange(n * 4 * 4, dtype=np.float64).reshape(n, 1, 4, 4)
    return Dataset(x, np.arange(n) % 2, np.zeros((n, 4, 4), bool), name="toy", classes=("a", "b"))


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: Dataset(np.zeros((3, 2)), np.zeros(4)), "shape"),
        (lambda: Dataset(np.zeros((3, 1, 4, 4)), np.zeros(3), np.zeros((3, 4, 5), bool)), "masks"),
        (lambda: Dataset(np.zeros((2, 1, 4, 4)), np.zeros(2), np.zeros((3, 4, 4), bool)), "masks"),
        (lambda: Dataset(np.zeros((3, 2)), np.zeros(3), np.zeros((3, 2), bool)), "masks"),
        (lambda: Dataset(np.zeros((3, 2)), np.array([0.5, 1, 0])), "integer"),
        (lambda: Dataset(np.zeros((3, 2)), np.array([0, 1, 2]), classes=("a", "b")), "labels"),
        (lambda: Dataset(np.zeros(3), np.zeros(3)), "batch first"),
        (lambda: Dataset(np.array([["a"], ["b"]]), np.zeros(2)), "numbers"),
    ],
)
def test_dataset_rejects_inconsistent_parts(make, words):
    with pytest.raises(BadInput, match=words):
        make()


def test_dataset_names_the_first_non_finite_sample():
    x = np.zeros((6, 3), np.float32)
    x[3, 1], x[5, 0] = np.nan, np.inf
    with pytest.raises(BadInput, match="sample 3"):
        Dataset(x, np.zeros(6))


def test_subset_takes_positions_or_flags():
    data = _toy()
    assert (data.x.dtype, data.y.dtype, len(data), data.name) == (np.float32, np.int64, 20, "toy")
    part = data.subset([4, 1])
    np.testing.assert_array_equal(part.y, [0, 1])
    np.testing.assert_array_equal(part.x, data.x[[4, 1]])
    assert part.masks.shape == (2, 4, 4) and part.classes == data.classes
    assert len(data.subset(data.y == 1)) == 10
    for bad in ([20], [], [[1, 2]], [0.5]):
        with pytest.raises(BadInput):
            data.subset(bad)


def test_split_is_stratified_disjoint_and_deterministic():
    x = np.arange(100, dtype=np.float32)[:, None]
    y = (np.arange(100) < 30).astype(int)  # 30 of class 1, 70 of class 0
    data = Dataset(x, y)
    train, test = data.split(0.2, seed=5)
    assert len(test) == 20 and test.y.sum() == 6
    ids = np.concatenate([train.x[:, 0], test.x[:, 0]])
    assert sorted(ids) == list(range(100))
    again, _ = data.split(0.2, seed=5)
    other, _ = data.split(0.2, seed=6)
    np.testing.assert_array_equal(train.x, again.x)
    assert not np.array_equal(train.x, other.x)
    for bad in (0, 1, -0.1):
        with pytest.raises(BadInput):
            data.split(bad)


def test_batches_cover_the_data_in_order():
    data = _toy(10)
    got = list(data.batches(4))
    assert [len(y) for _, y in got] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in got]), data.x)
    with pytest.raises(BadInput):
        next(data.batches(0))


def test_as_dataset_accepts_all_documented_forms():
    x = np.random.default_rng(0).random((10, 1, 4, 4))
    y = np.arange(10) % 3
    masks = np.zeros((10, 4, 4), bool)
    data = _toy()
    assert as_dataset(data) is data
    from_numpy = as_dataset((x, y))
    assert from_numpy.x.dtype == np.float32 and from_numpy.y.dtype == np.int64 and from_numpy.masks is None
    from_torch = as_dataset((torch.tensor(x), torch.tensor(y), torch.tensor(masks)))
    np.testing.assert_allclose(from_torch.x, from_numpy.x)
    assert from_torch.masks.shape == (10, 4, 4)
    loader = DataLoader(TensorDataset(torch.tensor(x), torch.tensor(y)), batch_size=3)
    from_loader = as_dataset(loader)
    np.testing.assert_allclose(from_loader.x, from_numpy.x)
    np.testing.assert_array_equal(from_loader.y, y)


EMPTY_LOADER = DataLoader(TensorDataset(torch.zeros(0, 3), torch.zeros(0)), batch_size=2)


@pytest.mark.parametrize("junk", ["x.npz", 3, (np.zeros((2, 2)),), ([1, 2], [0, 1]), {"x": 1}, EMPTY_LOADER])
def test_as_dataset_rejects_other_things_with_a_hint(junk):
    with pytest.raises(BadInput, match="DataLoader"):
        as_dataset(junk)


def test_npz_round_trip(tmp_path):
    data = lesions(6, seed=0)
    path = tmp_path / "scans.npz"
    np.savez(path, x=data.x, y=data.y, masks=data.masks, classes=np.array(data.classes))
    back = load_npz(path)
    for field in ("x", "y", "masks"):
        np.testing.assert_array_equal(getattr(back, field), getattr(data, field))
    assert back.classes == data.classes and back.name == "scans"
    np.savez(tmp_path / "plain.npz", x=np.zeros((2, 3)), y=np.array([0, 1]))
    assert load_npz(str(tmp_path / "plain.npz")).masks is None


def test_npz_problems_raise_bad_input(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, x=np.zeros((50, 3)), y=np.zeros(50))
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:300])
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 definitely not a zip archive")
    np.savez(tmp_path / "no_y.npz", x=np.zeros((2, 3)))
    np.save(tmp_path / "single.npy", np.zeros(3))
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    expected = {"missing.npz": "no file", "no_y.npz": "lacks the array.*y", "corrupt.npz": "not a readable",
                "cut.npz": "not a readable", "single.npy": "single array", "objects.npz": "Python objects"}
    for name, words in expected.items():
        with pytest.raises(BadInput, match=words):
            load_npz(tmp_path / name)


def test_sklearn_sets_have_the_documented_shapes():
    digits = load("digits")
    assert digits.x.shape == (1797, 1, 8, 8) and digits.x.min() == 0 and digits.x.max() == 1
    assert len(digits.classes) == 10
    cancer = load("breast-cancer")
    assert cancer.x.shape == (569, 30) and cancer.x.dtype == np.float32 and cancer.x.max() > 100
    assert cancer.classes == ("malignant", "benign")


def test_load_takes_a_deterministic_subset():
    a, b = load("digits", n=100, seed=1), load("digits", n=100, seed=1)
    np.testing.assert_array_equal(a.x, b.x)
    assert len(a) == 100 and not np.array_equal(a.x, load("digits", n=100, seed=2).x)
    assert len(load("lesions", n=12)) == 12
    assert load("breast_cancer", n=10).name == "breast-cancer"
    for bad in (10_000, 0):
        with pytest.raises(BadInput):
            load("digits", n=bad)


def test_unknown_dataset_name_suggests_the_closest():
    assert DATASETS == ("lesions", "digits", "breast-cancer", "vader-sentiment")
    with pytest.raises(UnknownMethod, match="did you mean 'lesions'"):
        load("lesion")
    with pytest.raises(UnknownMethod, match="digits"):
        load("mnist")
