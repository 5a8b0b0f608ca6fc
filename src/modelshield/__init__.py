"""modelshield: a static security scanner for machine-learning model files.

It inspects model files without loading or executing them and reports what would run, where, how
badly, and what to do about it.
"""

from __future__ import annotations

__version__ = "0.1.0"

from modelshield.api import ScanInputError, scan, scan_file  # noqa: E402
from modelshield.core.findings import Finding, Location  # noqa: E402
from modelshield.core.policy import Policy, PolicyError, load_policy_file  # noqa: E402
from modelshield.core.report import FileResult, Report  # noqa: E402
from modelshield.core.rules import CATALOGUE, Category, Rule, Severity  # noqa: E402

__all__ = [
    "CATALOGUE",
    "Category",
    "FileResult",
    "Finding",
    "Location",
    "Policy",
    "PolicyError",
    "Report",
    "Rule",
    "ScanInputError",
    "Severity",
    "__version__",
    "load_policy_file",
    "scan",
    "scan_file",
]
