"""modelshield: a static security scanner for machine-learning model files.

It inspects model files without loading or executing them and reports what would run, where, how
badly, and what to do about it.
"""

from __future__ import annotations

__version__ = "0.1.0"

from modelshield.api import ScanInputError, load_policy, scan, scan_file
from modelshield.core.findings import Finding, Location
from modelshield.core.policy import Policy, PolicyError
from modelshield.core.report import FileResult, Report
from modelshield.core.rules import CATALOGUE, Category, Rule, Severity

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
    "load_policy",
    "scan",
    "scan_file",
]
