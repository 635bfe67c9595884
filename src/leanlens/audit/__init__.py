"""What changed: profiles of cost and `audit()` of a candidate against a reference."""

from leanlens.audit.audit import (
    Assessment,
    AuditResult,
    assess,
    assessment_metrics,
    audit,
    probe_set,
)
from leanlens.audit.profile import Profile, fingerprint, profile

__all__ = ["Assessment", "AuditResult", "Profile", "assess", "assessment_metrics", "audit", "fingerprint", "probe_set", "profile"]
