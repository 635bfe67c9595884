"""Tests for the hard setting of the lesions set: faint small lesions among distractor spots."""

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, label, uniform_filter
from scipy.stats import ks_2samp
from sklearn.linear_model import LogisticRegression

from leanlens.data import NAMES, SETTINGS, lesions, load, render_film, render_lesions
from leanlens.data.synthetic import lesion_masks
from leanlens.errors import BadOption, UnknownMethod


@pytest.fixture(scope="module")
def film():
    return render_film(1000, seed=1, difficulty="hard")


@pytest.fixture(scope="module")
def hard():
    return lesions(1000, seed=1, difficulty="hard")


def test_the_image_is_film_plus_spots_plus_lesion_and_masks_are_the_lesion(film, hard):
    np.testing.assert_array_equal(hard.y, film.y)
    np.testing.assert_allclose(hard.x[:, 0], np.clip(film.background + film.distractors + film.lesion, 0, 1))
    np.testing.assert_array_equal(hard.masks, lesion_masks(film.lesion))
    sick = film.y == 1
    assert not film.lesion[~sick].any() and not hard.masks[~sick].any()
    assert hard.masks[sick].any(axis=(1, 2)).all()
    # The mask holds (nearly) all the lesion's intensity and no pixel the lesion left alone.
    inside = (film.lesion * hard.masks).sum(axis=(1, 2))[sick] / film.lesion.sum(axis=(1, 2))[sick]
    assert inside.min() >= 0.99 and not (hard.masks & (film.lesion == 0)).any()
    assert all(label(m)[1] == 1 for m in hard.masks[sick][:100])
    assert hard.name == "lesions-hard" and hard.classes == ("clear", "lesion")


@pytest.mark.parametrize("size", [64, 16, 128])
def test_no_distractor_touches_a_lesion(film, size):
    # At 16 px spots that find no room are left out, at 128 px spots and lesions scale up.
    film = film if size == 64 else render_film(200, seed=2, size=size, difficulty="hard")
    lit = film.lesion > 0
    # The GAP of 1 px: no lit spot pixel is a row or column neighbour of a lit lesion pixel.
    cross = np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool)
    near = binary_dilation(lit, structure=cross)
    assert not (near & (film.distractors > 0)).any()
    # So a lesion's mask (a subset of its lit pixels) never covers any part of a distractor.
    assert not (lesion_masks(film.lesion) & (film.distractors > 0)).any()


def test_every_image_of_both_classes_holds_distractors(film):
    spots = film.distractors > 0
    assert spots.any(axis=(1, 2)).all()
    counts = np.array([label(s, structure=np.ones((3, 3)))[1] for s in spots])  # diagonal steps join a streak
    for cls in (0, 1):
        # One to three spots each, two in the middle of the range; overlapping spots may merge.
        share = np.bincount(counts[film.y == cls], minlength=5)[1:4] / (film.y == cls).sum()
        assert share.min() > 0.25 and counts.max() <= 3


def _spot_features(film) -> np.ndarray:
    """Per image: lit area, total and peak intensity, and centroid of its distractors."""
    spots = film.distractors
    total = spots.sum(axis=(1, 2))
    rows, cols = np.mgrid[: spots.shape[1], : spots.shape[2]]
    return np.stack([(spots > 0).sum(axis=(1, 2)), total, spots.max(axis=(1, 2)),
                     (spots * rows).sum(axis=(1, 2)) / total, (spots * cols).sum(axis=(1, 2)) / total], axis=1)


def test_distractors_follow_one_distribution_in_both_classes(film):
    features = _spot_features(film)
    clear, sick = features[film.y == 0], features[film.y == 1]
    for column in range(features.shape[1]):
        assert ks_2samp(clear[:, column], sick[:, column]).pvalue > 0.01
    # Together they predict the label no better than chance on held-out images.
    score = LogisticRegression(max_iter=1000).fit(features[:600], film.y[:600]).score(features[600:], film.y[600:])
    assert score < 0.58


def test_the_distribution_check_would_catch_a_label_cue(film):
    """The same check, on distractors 10 % brighter in class 1, fails: it has the power to."""
    features = _spot_features(film)
    features[film.y == 1, 1:3] *= 1.1
    assert ks_2samp(features[film.y == 0, 2], features[film.y == 1, 2]).pvalue < 0.01


def test_lesion_size_and_contrast_are_the_documented_ones(film, hard):
    assert SETTINGS["hard"].radius == (3.0, 5.0) and SETTINGS["hard"].peak == (0.14, 0.24)
    sick = film.y == 1
    # The dome's top falls between pixels, so the brightest pixel can sit a little below the drawn peak.
    peak = film.lesion[sick].max(axis=(1, 2))
    assert peak.min() >= 0.13 and peak.max() <= 0.24 + 1e-6 and peak.min() < 0.15 and peak.max() > 0.23
    # Radius 3..5 px (+-36 % wobble, plus about half the 1.5 px rim): the equal-area radius stays near it.
    radius = np.sqrt(hard.masks[sick].sum(axis=(1, 2)) / np.pi)
    assert radius.min() >= 2.5 and radius.max() <= 6.5 and radius.min() < 3.5 and radius.max() > 5.0
    # Distractors are as bright as lesions (overlapping spots can add up, hence the median).
    spot_peak = film.distractors.max(axis=(1, 2))
    assert 0.16 < np.median(spot_peak) < 0.22 and np.mean(spot_peak <= 0.24 + 1e-6) > 0.95


def test_hard_lesions_are_smaller_and_fainter_than_easy_ones_on_the_same_films(film):
    easy = render_film(1000, seed=1)
    # The first 256 images (one rendering chunk) share labels and film: the hard set only adds to it.
    np.testing.assert_array_equal(easy.y, film.y)
    np.testing.assert_array_equal(easy.background[:256], film.background[:256])
    assert not easy.distractors.any()
    sick = film.y == 1
    for layer in ("sum", "max"):
        hard_sizes = getattr(film.lesion[sick], layer)(axis=(1, 2))
        easy_sizes = getattr(easy.lesion[sick], layer)(axis=(1, 2))
        assert np.median(hard_sizes) < 0.6 * np.median(easy_sizes)


def test_a_brightness_detector_that_solves_the_easy_set_fails_on_the_hard_one():
    """The local-contrast feature that separates the easy classes is fooled by the distractors."""
    def contrast_score(data):
        images = data.x[:, 0]
        blurred = uniform_filter(images, size=(1, 5, 5))
        feature = (blurred.max(axis=(1, 2)) - np.median(images.reshape(len(images), -1), axis=1))[:, None]
        return LogisticRegression().fit(feature[:400], data.y[:400]).score(feature[400:], data.y[400:])

    assert contrast_score(lesions(600, seed=2)) >= 0.85
    assert contrast_score(lesions(600, seed=2, difficulty="hard")) < 0.75


def test_hard_set_is_deterministic_per_seed():
    a, b, c = (lesions(200, seed=s, difficulty="hard") for s in (3, 3, 4))
    for field in ("x", "y", "masks"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.x, c.x)


def test_render_lesions_counts_the_distractors_as_background():
    film = render_film(200, seed=6, difficulty="hard")
    background, lesion_map, y = render_lesions(200, seed=6, difficulty="hard")
    np.testing.assert_array_equal(background, film.background + film.distractors)
    np.testing.assert_array_equal(lesion_map, film.lesion)
    np.testing.assert_array_equal(y, film.y)


def test_load_knows_the_hard_set_by_name():
    assert "lesions-hard" in NAMES
    data = load("lesions-hard", n=40, seed=5)
    np.testing.assert_array_equal(data.x, lesions(40, seed=5, difficulty="hard").x)
    assert data.name == "lesions-hard" and len(load("Lesions_Hard", n=3)) == 3
    np.testing.assert_array_equal(load("lesions", n=40, seed=5).x, lesions(40, seed=5).x)
    with pytest.raises(UnknownMethod, match="did you mean 'lesions-hard'"):
        load("lesion-hard")


@pytest.mark.parametrize("difficulty", ["medium", "Hard", None, 2])
def test_an_unknown_difficulty_is_refused_with_the_choices(difficulty):
    with pytest.raises(BadOption, match="difficulty.*hint: use difficulty='easy' or difficulty='hard'"):
        lesions(10, difficulty=difficulty)
