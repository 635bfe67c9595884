"""Model files for tabular models: skops (scikit-learn, trees kept), XGBoost's own JSON and UBJSON,
leanlens' own, ONNX, and trusted pickles.

skops stores an estimator as data and rebuilds it from named types; a file naming a type
skops does not trust by default is loaded only when every such type is a scikit-learn
class (trees' `sklearn.tree._tree.Tree`, for instance). Anything else (a function, a class
from another package or from the script that wrote the file) is refused: rebuilding it
could run its code. XGBoost's `save_model` files are data (trees and settings), read by
XGBoost itself into the scikit-learn wrapper its objective names. A pickle always runs
code, so it needs `trust_pickle`.
"""

from __future__ import annotations

import importlib
import json
import zipfile
from pathlib import Path

from leanlens.errors import BadInput, MissingCapability, UnsafeFile
from leanlens.models.architecture import first_line

PICKLES = (".pkl", ".pickle", ".joblib")
XGBOOST = (".json", ".ubj")  # XGBoost's save_model formats
HINT = "pass a .skops file (scikit-learn), an XGBoost .json or .ubj, an .onnx file or a file from ll.save"
TRUSTED_PACKAGE = "sklearn"


def load_tabular_model(path: str | Path, *, trust_pickle: bool = False):
    """The model a file holds: a scikit-learn estimator (skops, or a pickle when trusted) or a leanlens Model."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"no model file at {str(path)!r}", HINT)
    suffix = path.suffix.lower()
    if suffix in PICKLES:
        return _pickled(path, trust_pickle)
    if suffix == ".skops" or _holds_skops_schema(path):
        return load_skops(path)
    if suffix in XGBOOST:
        return load_xgboost(path)
    from leanlens.models.modelfile import resolve_model

    if suffix == ".onnx" or zipfile.is_zipfile(path):
        return resolve_model(path)
    raise BadInput(f"cannot tell what kind of model {path.name} holds", HINT)


def load_xgboost(path: Path):
    """An XGBClassifier or XGBRegressor (as its objective says) from an XGBoost model file."""
    try:
        import xgboost
    except ImportError:
        raise MissingCapability(f"reading {path.name} needs xgboost", "pip install 'leanlens[trees]'") from None
    booster = xgboost.Booster()
    try:
        booster.load_model(path)
    except xgboost.core.XGBoostError as error:
        raise BadInput(f"{path.name} is not an XGBoost model file ({first_line(error)})",
                       "write it with model.save_model('model.json'), or " + HINT) from None
    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    classifier = objective.startswith(("binary:", "multi:"))
    model = xgboost.XGBClassifier() if classifier else xgboost.XGBRegressor()
    model.load_model(path)
    return model


def load_skops(path: Path):
    """A scikit-learn estimator from a skops file, rebuilding scikit-learn classes only."""
    try:
        import skops.io as sio
    except ImportError:
        raise MissingCapability("reading .skops files needs the skops package",
                                "pip install 'leanlens[sklearn]'") from None
    try:
        needed = sio.get_untrusted_types(file=path)
    except Exception as error:  # noqa: BLE001 - a damaged archive raises zip, JSON or key errors
        raise BadInput(f"{path.name} is not a readable skops file ({first_line(error)})",
                       "write it again with skops.io.dump") from None
    refused = [name for name in needed if not _is_sklearn_class(name)]
    if refused:
        raise UnsafeFile(f"{path.name} asks to rebuild {refused[0]!r}, which is not a scikit-learn class",
                         "load only skops files of scikit-learn estimators, written by someone you trust")
    try:
        return sio.load(path, trusted=needed)
    except Exception as error:  # noqa: BLE001 - skops rebuilds through many types, each with its own errors
        raise BadInput(f"cannot rebuild the model in {path.name}: {first_line(error)}",
                       "write it again with skops.io.dump and the same scikit-learn version") from None


def _is_sklearn_class(name: str) -> bool:
    """Whether a dotted type name is a class defined inside scikit-learn (functions are refused)."""
    module, _, attribute = name.rpartition(".")
    if module.split(".")[0] != TRUSTED_PACKAGE:
        return False
    try:
        found = getattr(importlib.import_module(module), attribute, None)
    except ImportError:
        return False
    return isinstance(found, type) and found.__module__.split(".")[0] == TRUSTED_PACKAGE


def _holds_skops_schema(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return "schema.json" in archive.namelist()


def _pickled(path: Path, trust_pickle: bool):
    if not trust_pickle:
        raise UnsafeFile(f"{path.name} is a pickle: loading it runs any code it holds",
                         "save the model with skops.io.dump, or pass --trust-pickle for a file you made yourself")
    import joblib  # scikit-learn's own dependency; reads plain pickles too

    try:
        return joblib.load(path)
    except Exception as error:  # noqa: BLE001 - unpickling raises whatever the pickled code raises
        raise BadInput(f"cannot load {path.name}: {first_line(error)}", "check that pickle or joblib wrote it") from None
