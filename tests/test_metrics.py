"""Similarity and localization metrics against scipy and hand-computed cases."""

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from leanlens.errors import BadInput
from leanlens.metrics import (
    SIMILARITIES,
    ExplanationScores,
    cosine,
    has_object,
    heatmap,
    pointing_game,
    relevance_mass,
    score_explanations,
    spearman,
    top_k_overlap,
)
from leanlens.metrics.record import FORMATS, formatted, human_bytes, human_count

RNG = np.random.default_rng(0)


# spearman ------------------------------------------------------------------

@pytest.mark.parametrize("ties", [False, True])
def test_spearman_matches_scipy_per_sample(ties):
    a = RNG.normal(size=(7, 3, 5, 4))
    b = a + RNG.normal(scale=1.0, size=a.shape)
    if ties:
        a, b = np.round(a), np.round(b * 2) / 2  # many equal values
    got = spearman(a, b)
    want = [spearmanr(a[i].ravel(), b[i].ravel()).statistic for i in range(len(a))]
    assert got.shape == (7,) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_spearman_identical_and_reversed():
    a = RNG.normal(size=(4, 20))
    np.testing.assert_allclose(spearman(a, a), 1.0)
    np.testing.assert_allclose(spearman(a, -a), -1.0)
    np.testing.assert_allclose(spearman(a, a[:, ::-1].copy())[0],
                               spearmanr(a[0], a[0, ::-1]).statistic)


def test_spearman_constant_maps_are_defined():
    const = np.ones((1, 10))
    other = np.arange(10.0)[None]
    assert spearman(const, const)[0] == 1.0
    assert spearman(const, other)[0] == 0.0
    assert spearman(other, const)[0] == 0.0
    assert spearman(const, 2 * const)[0] == 0.0  # both constant but not equal


def test_monotone_transform_keeps_rank_metrics():
    a = RNG.normal(size=(5, 50))
    b = RNG.normal(size=(5, 50))
    t = np.exp(3 * b) + 7  # strictly increasing
    np.testing.assert_allclose(spearman(a, t), spearman(a, b), atol=1e-12)
    np.testing.assert_array_equal(top_k_overlap(a, t, 0.2), top_k_overlap(a, b, 0.2))


# top-k overlap ---------------------------------------------------------------

def test_top_k_hand_computed():
    a = np.arange(10.0)[None]  # top-1 is index 9
    same = a.copy()
    moved = a.copy()
    moved[0, [0, 9]] = moved[0, [9, 0]]  # top-1 is now index 0
    assert top_k_overlap(a, same, 0.1)[0] == 1.0
    assert top_k_overlap(a, moved, 0.1)[0] == 0.0
    # k = 3: a's top is {7, 8, 9}, moved's is {0, 7, 8}
    assert top_k_overlap(a, moved, 0.3)[0] == pytest.approx(2 / 3)


def test_top_k_uses_signed_values_not_magnitude():
    a = np.array([[-10.0, 1.0, 2.0, 3.0]])
    b = np.array([[10.0, 1.0, 2.0, 3.0]])
    assert top_k_overlap(a, b, 0.25)[0] == 0.0  # top of a is 3.0, of b is 10.0


def test_top_k_at_least_one_feature_and_fraction_checked():
    a = np.arange(5.0)[None]
    assert top_k_overlap(a, a, 0.01)[0] == 1.0
    for bad in (0, 0.0, -0.1, 1.5, "0.1", True):
        with pytest.raises(BadInput):
            top_k_overlap(a, a, bad)


# cosine --------------------------------------------------------------------

def test_cosine_known_values():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0], [0.0, 0.0]])
    b = np.array([[0.0, 3.0], [2.0, 2.0], [-1.0, -2.0], [0.0, 0.0]])
    np.testing.assert_allclose(cosine(a, b), [0.0, 1.0, -1.0, 1.0])
    assert cosine(np.zeros((1, 3)), np.ones((1, 3)))[0] == 0.0


# shared input checks -----------------------------------------------------------

@pytest.mark.parametrize("fn", list(SIMILARITIES.values()))
def test_similarity_refuses_bad_inputs(fn):
    with pytest.raises(BadInput):
        fn(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(BadInput):
        fn(np.zeros(3), np.zeros(3))  # no batch axis
    with pytest.raises(BadInput):
        fn(np.full((1, 3), np.nan), np.zeros((1, 3)))


def test_similarities_registry():
    assert set(SIMILARITIES) == {"spearman", "top_k_overlap", "cosine"}


# localization ----------------------------------------------------------------

def _mask(h=8, w=8, rows=slice(2, 4), cols=slice(2, 4)):
    m = np.zeros((h, w), dtype=bool)
    m[rows, cols] = True
    return m


def test_pointing_game_inside_outside_tolerance():
    masks = np.stack([_mask()] * 3)
    maps = np.zeros((3, 8, 8))
    maps[0, 3, 3] = 1.0  # inside
    maps[1, 7, 7] = 1.0  # far outside
    maps[2, 3, 4] = 1.0  # one pixel right of the box (cols 2-3)
    np.testing.assert_array_equal(pointing_game(maps, masks), [True, False, False])
    np.testing.assert_array_equal(pointing_game(maps, masks, tolerance=1),
                                  [True, False, True])
    # (7, 7) is 4 pixels diagonally from (3, 3): Euclidean distance sqrt(32) > 5
    assert not pointing_game(maps[1:2], masks[1:2], tolerance=5)[0]
    assert pointing_game(maps[1:2], masks[1:2], tolerance=6)[0]


def test_pointing_game_channels_and_empty_masks():
    masks = np.stack([_mask(), np.zeros((8, 8), bool)])
    maps = np.zeros((2, 3, 8, 8))
    maps[:, 0, 2, 2] = 1.0
    maps[:, 1, 2, 2] = 1.0
    maps[:, 2, 6, 6] = 1.5  # biggest single channel value, but 2.0 wins summed
    np.testing.assert_array_equal(pointing_game(maps, masks), [True, False])
    np.testing.assert_array_equal(has_object(masks), [True, False])
    assert pointing_game(maps[:, :1], masks.astype(int)).dtype == bool


def test_relevance_mass_known_value():
    masks = _mask(4, 4, slice(0, 2), slice(0, 2))[None]
    maps = np.zeros((1, 4, 4))
    maps[0, 0, 0] = 3.0  # inside
    maps[0, 3, 3] = 1.0  # outside
    maps[0, 1, 1] = -5.0  # negative relevance is ignored
    np.testing.assert_allclose(relevance_mass(maps, masks), [0.75])
    assert relevance_mass(np.zeros((1, 4, 4)), masks)[0] == 0.0
    # one channel is the same map; with several, magnitudes count and |-5| lies inside
    np.testing.assert_allclose(relevance_mass(maps[:, None], masks), [0.75])
    np.testing.assert_allclose(relevance_mass(np.concatenate([maps[:, None], 0 * maps[:, None]], 1), masks), [8 / 9])


def test_localization_refuses_mismatches():
    maps = np.zeros((2, 8, 8))
    with pytest.raises(BadInput):
        pointing_game(maps, np.zeros((2, 7, 8), bool))
    with pytest.raises(BadInput):
        relevance_mass(maps, np.zeros((3, 8, 8), bool))
    with pytest.raises(BadInput):
        pointing_game(maps, np.full((2, 8, 8), 0.5))
    with pytest.raises(BadInput):
        pointing_game(maps, np.zeros((2, 8, 8), bool), tolerance=-1)
    with pytest.raises(BadInput):
        relevance_mass(np.zeros((2, 1, 1, 8, 8)), np.zeros((2, 8, 8), bool))


def test_empty_batch_gives_empty_scores():
    empty = np.zeros((0, 4, 4))
    for fn in SIMILARITIES.values():
        assert fn(empty, empty).shape == (0,)
    masks = np.zeros((0, 4, 4), bool)
    assert pointing_game(empty, masks).shape == (0,)
    assert relevance_mass(empty, masks).shape == (0,)
    assert has_object(masks).shape == (0,)


# one heat map, one record ---------------------------------------------------------

def test_channels_collapse_to_the_sum_of_magnitudes_everywhere():
    values = np.zeros((1, 3, 4, 4))
    values[0, 0, 1, 1], values[0, 1, 1, 1] = 2.0, -2.0  # cancels in a signed sum
    values[0, 2, 3, 3] = 1.5
    np.testing.assert_array_equal(heatmap(values)[0, 1, 1], 4.0)
    cam = np.random.default_rng(0).normal(size=(2, 4, 4))
    np.testing.assert_array_equal(heatmap(cam), cam)  # spatial maps keep their sign
    mask = np.zeros((1, 4, 4), bool)
    mask[0, 1, 1] = True
    assert pointing_game(values, mask)[0]  # a signed sum would have pointed at (3, 3)
    np.testing.assert_allclose(relevance_mass(values, mask), [4 / 5.5])
    with pytest.raises(BadInput, match="one map per input"):
        heatmap(np.zeros((2, 4)))


def test_one_channel_scores_as_no_channel_axis():
    """A grey image's attributions, (N, 1, H, W), are the same map as (N, H, W): sign kept."""
    flat = np.zeros((1, 2, 2))
    flat[0, 0, 0], flat[0, 0, 1] = -10.0, 1.0  # strong evidence against the class on the object
    mask = np.zeros((1, 2, 2), bool)
    mask[0, 0, 0] = True
    for values in (flat, flat[:, None]):
        assert not pointing_game(values, mask)[0]
        np.testing.assert_allclose(relevance_mass(values, mask), [0.0])


def test_scores_record_hand_computed():
    ref = np.arange(16.0).reshape(1, 4, 4)
    masks = np.zeros((1, 4, 4), bool)
    masks[0, 3, 3] = True
    same = score_explanations(ref, reference=ref, masks=masks, pointing_tolerance=0)
    assert (same.spearman, same.top_k, same.cosine, same.pointing_game) == (1.0, 1.0, 1.0, 1.0)
    assert same.relevance_mass == pytest.approx(15 / 120)
    assert same.relevance_rank == 1.0  # the one object pixel is the top-ranked one
    assert same.ssim is None  # a 4×4 map is smaller than SSIM's window: not measured, not 0
    # Gini of 0, 1, ..., 15: sum over the sorted values of (2i - d - 1) v_i, over d · sum v
    d, v = 16, np.arange(16.0)
    assert same.sparseness == pytest.approx(((2 * np.arange(1, d + 1) - d - 1) * v).sum() / (d * v.sum()))
    big = np.random.default_rng(0).random((2, 16, 16))
    assert score_explanations(big, reference=big).ssim == pytest.approx(1.0)
    flipped = score_explanations(-ref, reference=ref, top_k_fraction=0.25)
    assert flipped.spearman == pytest.approx(-1.0) and flipped.top_k == 0.0
    assert flipped.pointing_game is None and flipped.top_k_fraction == 0.25
    # no mask holds an object: localization is not measured, rather than scored 0
    assert score_explanations(ref, masks=np.zeros((1, 4, 4), bool)).pointing_game is None


def test_scores_record_round_trips_through_json_and_ignores_unknown_keys():
    record = ExplanationScores(spearman=0.5, top_k=0.25, pointing_game=1.0, pointing_tolerance=4)
    data = json.loads(json.dumps(record.to_json()))
    assert "cosine" not in data  # unmeasured figures are not written
    assert ExplanationScores.from_json(data) == record
    assert ExplanationScores.from_json({**data, "deletion_auc": 0.3}) == record  # a newer writer
    for damaged in ({"top_k_fraction": "0.1"}, {"pointing_tolerance": 4.5}, {"spearman": True}):
        with pytest.raises(BadInput, match="damaged"):  # would crash the report's formatting later
            ExplanationScores.from_json({**data, **damaged})
    names = [name for name, _ in ExplanationScores.shown_fields()]
    assert names == ["spearman", "top_k", "cosine", "ssim", "pointing_game", "relevance_mass", "relevance_rank",
                     "sparseness"]
    assert all(how.label and how.kind in FORMATS and how.tip for _, how in ExplanationScores.shown_fields())


def test_figures_are_formatted_one_way():
    assert formatted(0.875, "percent") == "87.5 %" and formatted(1234567, "count") == "1.2 M"
    assert formatted(None, "score") is None and formatted(True, "score") is None
    assert formatted(float("nan"), "ms") is None and formatted("torch", "text") == "torch"
    assert human_count(999) == "999" and human_count(999_960) == "1.0 M"
    assert human_bytes(512) == "512 B" and human_bytes(1_234_567) == "1.2 MB"
