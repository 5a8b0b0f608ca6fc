"""The integrity step of a scan: verify each scanned model's signature and report failures as findings.

Signatures cover a whole model (a folder or one file), not one file, so this runs once per path given to
the scan, after the per-file engine, and adds one result per model to the report.
"""

from __future__ import annotations

import os
import time

from modelshield.core.findings import Finding, Location
from modelshield.core.policy import Policy
from modelshield.core.report import FileResult, ScannedObject
from modelshield.core.rules import Severity
from modelshield.integrity.rules import SIGNATURE_INVALID, SIGNATURE_MISSING
from modelshield.integrity.signing import SignatureMissing, VerificationError, default_signature_path, verify_model

#: The `format` of the results this step adds to a report.
SIGNATURE_FORMAT = "model signature"


def check_signature(model: str, public_key: str, policy: Policy, signature: str | None = None) -> FileResult:
    """Verify one model; a missing signature is high only when the policy requires one, info otherwise."""
    started = time.perf_counter()
    signature = signature or default_signature_path(model)
    result = FileResult(model, format=SIGNATURE_FORMAT)
    findings: list[Finding] = []
    try:
        verify_model(model, signature, public_key=public_key)
        result.objects.append(ScannedObject(signature, f"{SIGNATURE_FORMAT} (verified)"))
    except SignatureMissing as exc:
        level = None if policy.require_signature else Severity.INFO
        findings.append(Finding(SIGNATURE_MISSING, Location(signature), str(exc), severity=level))
    except VerificationError as exc:
        result.objects.append(ScannedObject(signature, f"{SIGNATURE_FORMAT} (failed)"))
        findings += [
            Finding(
                SIGNATURE_INVALID,
                Location(model if os.path.isfile(model) else os.path.join(model, change.name)),
                f"{change.describe()} (signature {signature})",
                details={"change": change.kind, "signature": signature}
                | ({"target": change.target} if change.target else {}),
            )
            for change in exc.changes
        ] or [Finding(SIGNATURE_INVALID, Location(signature), str(exc), details={"signature": signature})]
    for finding in findings:
        result.record(finding, policy)
    result.is_model = bool(result.findings)
    result.seconds = time.perf_counter() - started
    return result
