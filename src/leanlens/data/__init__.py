"""Data for leanlens: the Dataset container, the built-in lesion set and loaders."""

from leanlens.data.dataset import Dataset, as_dataset
from leanlens.data.loaders import DATASETS, breast_cancer, digits, load, load_npz
from leanlens.data.synthetic import lesions, render_lesions

__all__ = [
    "DATASETS",
    "Dataset",
    "as_dataset",
    "breast_cancer",
    "digits",
    "lesions",
    "load",
    "load_npz",
    "render_lesions",
]
