"""A local SQLite record of model versions and their explanations."""

from leanlens.store.attachments import Attachment
from leanlens.store.opened import opened
from leanlens.store.records import Explained, GateRun, Probe, Version, held_out_split
from leanlens.store.sqlite import Store

__all__ = ["Attachment", "Explained", "GateRun", "Probe", "Store", "Version", "held_out_split", "opened"]
