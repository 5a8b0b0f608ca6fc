"""Hypothesis profiles for the fuzzers: a short run in the suite, a long one on demand.

    MODELSHIELD_FUZZ=long python -m pytest -q -p no:cacheprovider tests/fuzz

The profile only applies to the tests in this folder (through `FUZZ_SETTINGS`), never to the rest of
the suite's property tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from modelshield.formats.keras import hdf5

_COMMON = {
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    "print_blob": True,
}
# Deadline per example: generous (a loaded CI machine), but a hang or a quadratic blow-up fails it.
settings.register_profile("modelshield-fuzz-short", max_examples=30, deadline=5000, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("modelshield-fuzz-long", max_examples=3000, deadline=5000, **_COMMON)  # type: ignore[arg-type]

PROFILE = "modelshield-fuzz-long" if os.environ.get("MODELSHIELD_FUZZ") == "long" else "modelshield-fuzz-short"
FUZZ_SETTINGS = settings.get_profile(PROFILE)


@pytest.fixture(autouse=True, scope="package")
def _short_hdf5_timeout() -> Iterator[None]:
    """A file that hangs the HDF5 library is bounded by its child's timeout (a finding, not a crash);
    one second keeps such an example inside the fuzz deadline."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hdf5, "READ_SECONDS", 1.0)
        yield
