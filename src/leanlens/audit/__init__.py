"""What changed: profiles of cost and `audit()` of a candidate against a reference."""

from leanlens.audit.audit import Assessment, AuditResult, assess, audit, probe_set
from leanlens.audit.check import Check, Verdict, check
from leanlens.audit.explaining_cost import (
    ExplainingCost,
    ExplainingCosts,
    explaining_cost,
)
from leanlens.audit.figures import ModelFigures
from leanlens.audit.profile import Cost, Profile, fingerprint, profile
from leanlens.audit.runtimes import Latency, latencies
from leanlens.audit.timing import Timing, interleaved

__all__ = [
    "Assessment", "AuditResult", "Check", "Cost", "ExplainingCost", "ExplainingCosts", "Latency", "ModelFigures",
    "Profile", "Timing", "Verdict", "assess", "audit", "check", "explaining_cost", "fingerprint", "interleaved",
    "latencies", "probe_set", "profile",
]
