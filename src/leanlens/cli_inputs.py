"""What the command line's arguments name, turned into the API's values: data, targets, options."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from leanlens.data import Dataset, load, load_npz
from leanlens.errors import BadInput, BadOption


def read_data(spec: str, n: int | None = None) -> Dataset:
    """An `.npz` file or a built-in dataset name; with `n`, its first `n` samples."""
    if n is not None and n < 1:
        raise BadOption(f"--n {n}", "pass a positive number of samples")
    path = Path(spec)
    if path.suffix.lower() == ".npz":
        data = load_npz(path)
    elif path.exists():
        raise BadInput(f"cannot read {path.name} as data", "pass an .npz file with x (and y), or a built-in name")
    else:
        data = load(spec, n=n)
    return data if n is None or n >= len(data) else data.subset(np.arange(n))


def targets_for(choice: str, data: Dataset):
    """`predicted` (None), `label` (the data's y) or one class index for every sample."""
    if choice == "predicted":
        return None
    if choice == "label":
        return data.y
    if choice.isdigit():
        return int(choice)
    raise BadOption(f"--target {choice!r}", "use 'predicted', 'label' or a class index such as 1")


def method_options(pairs: list[str]) -> dict:
    """NAME=VALUE pairs as keyword options; a VALUE that reads as JSON (a number, true, a list) is that value."""
    options = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.isidentifier():
            raise BadOption(f"--option {pair!r}", "write it as NAME=VALUE, e.g. --option steps=32")
        try:
            options[name] = json.loads(text)
        except json.JSONDecodeError:
            options[name] = text  # a word such as a baseline or layer name
    return options
