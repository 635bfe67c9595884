"""Local attributions: one file a method family, all reached through `explain()`."""

from leanlens.explain.api import attribute, explain
from leanlens.explain.explanation import Explanation
from leanlens.explain.registry import MethodSpec, methods

__all__ = ["Explanation", "MethodSpec", "attribute", "explain", "methods"]
