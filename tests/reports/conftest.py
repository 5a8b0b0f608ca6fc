"""The Hugging Face cache fixture of the dependency tests, for reports that name Hub models."""

from tests.deps.conftest import hub_cache

__all__ = ["hub_cache"]
