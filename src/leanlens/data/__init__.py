"""Data for leanlens: the Dataset container, the built-in lesion set and loaders."""

from leanlens.data.dataset import Dataset, as_dataset, as_inputs
from leanlens.data.loaders import DATASETS, NAMES, breast_cancer, digits, load, load_npz
from leanlens.data.sentiment import TextDataset, vader_sentiment
from leanlens.data.synthetic import (
    SETTINGS,
    Film,
    Setting,
    lesions,
    render_film,
    render_lesions,
)

__all__ = [
    "DATASETS",
    "NAMES",
    "SETTINGS",
    "Dataset",
    "Film",
    "Setting",
    "TextDataset",
    "as_dataset",
    "as_inputs",
    "breast_cancer",
    "digits",
    "lesions",
    "load",
    "load_npz",
    "render_film",
    "render_lesions",
    "vader_sentiment",
]
