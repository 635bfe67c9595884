"""`opened()`: a store given as a `Store` or as the path of an existing file, for readers and the gate."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from leanlens.errors import BadInput
from leanlens.store.sqlite import Store


@contextlib.contextmanager
def opened(source) -> Iterator[Store]:
    """The caller's store as it is, or one opened from a path here and closed here.

    A path must name an existing file: `Store(path)` would create an empty store, and a
    typo would then be read as a store with nothing in it.
    """
    if isinstance(source, Store):
        yield source  # the caller's store: theirs to close
        return
    if not isinstance(source, (str, os.PathLike)):
        raise BadInput(f"store is a {type(source).__name__}, not a Store or a path",
                       "pass leanlens.store.Store(path) or the path of a store file")
    if not Path(source).is_file():
        raise BadInput(f"no store at {source}", "pass the path of a store file that leanlens wrote")
    with Store(source) as store:
        yield store
