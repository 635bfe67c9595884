"""A local SQLite record of model versions and their explanations."""

from leanlens.store.records import Explained, Probe, Version
from leanlens.store.sqlite import Store

__all__ = ["Explained", "Probe", "Store", "Version"]
