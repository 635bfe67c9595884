"""Explaining large data sets on Ray: `ll.explain(..., engine="ray")`, `ll.reasons(..., engine="ray")`.

The data is cut into contiguous shards, one Ray task a shard; the model travels as file
bytes (`shipping`); the results come back joined in row order and equal to the
single-process run (`jobs`). See docs/scale.md.
"""

from leanlens.scale.engine import Ray
from leanlens.scale.jobs import explain_on_ray, reasons_on_ray

__all__ = ["Ray", "explain_on_ray", "reasons_on_ray"]
