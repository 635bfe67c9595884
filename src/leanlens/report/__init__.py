"""A self-contained HTML report of the versions in a store.

    from leanlens.report import report
    page = report("runs/lens.db", "runs/report", method="gradcam++")
"""

from leanlens.report.build import report

__all__ = ["report"]
