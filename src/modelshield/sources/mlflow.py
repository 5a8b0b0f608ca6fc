"""MLflow models and run artifacts: `models:/NAME/VERSION`, `models:/NAME@ALIAS`, `runs:/RUN/PATH`.

Resolved and listed with the mlflow client (the `mlflow` extra), against `MLFLOW_TRACKING_URI` with the
credentials mlflow takes from the environment (`MLFLOW_TRACKING_TOKEN`, `MLFLOW_TRACKING_USERNAME` and
`MLFLOW_TRACKING_PASSWORD`). Artifacts the tracking server proxies (`mlflow-artifacts:`) are read by HTTP
range requests through it; artifacts in S3 by ranged GETs; artifacts on a local file system in place.
MLflow gives no content digest, so these verdicts are not cached.
"""

from __future__ import annotations

import base64
import os
import re
from typing import Any
from urllib.parse import quote, urlsplit

from modelshield.core.paths import escape_reason
from modelshield.core.source import FileSource, Source
from modelshield.sources import RemoteFile, RemoteInputError, RemoteUnavailable, Target
from modelshield.sources.http import Counter, Fetch, RangeSource

_MODELS = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))(?P<path>/.*)?$")
_RUNS = re.compile(r"^runs:/(?P<run>[0-9a-fA-F]{1,64})(?P<path>/.*)?$")
MAX_ARTIFACTS = 10_000


def _auth() -> dict[str, str]:
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"authorization": f"Bearer {token}"}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}


def _error(exc: Exception, uri: str) -> RemoteInputError:
    code = str(getattr(exc, "error_code", ""))
    if code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
        return RemoteInputError(f"cannot list {uri}: no such model, version, alias or run ({code})")
    if code in ("UNAUTHENTICATED", "PERMISSION_DENIED") or "401" in str(exc) or "403" in str(exc):
        return RemoteInputError(
            f"cannot list {uri}: authentication needed: set MLFLOW_TRACKING_TOKEN, or "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return RemoteInputError(f"cannot list {uri}: {type(exc).__name__}: {first}")


def _walk(repo: Any, path: str | None, out: list[tuple[str, int]]) -> None:
    for info in repo.list_artifacts(path):
        if len(out) > MAX_ARTIFACTS:
            raise RemoteInputError(f"more than {MAX_ARTIFACTS} artifacts; scan a narrower path")
        if info.is_dir:
            _walk(repo, info.path, out)
        else:
            out.append((info.path, int(info.file_size) if info.file_size is not None else -1))


def _opener(underlying: str, repo: Any, name: str, size: int, client: Any) -> Any:
    shown = f"{underlying.rstrip('/')}/{name}"
    artifact_uri = str(getattr(repo, "artifact_uri", underlying))
    if artifact_uri.startswith(("http://", "https://")):
        url = f"{artifact_uri.rstrip('/')}/{quote(name)}"

        def over_http(counter: Counter) -> Source:
            fetch = Fetch(client, url, _auth())
            return RangeSource(fetch, size, shown, counter) if size >= 0 else RangeSource.probe(fetch, shown, counter)

        return over_http
    if artifact_uri.startswith("s3://"):
        from modelshield.sources import s3  # noqa: PLC0415 - optional (boto3)

        parts = urlsplit(f"{artifact_uri.rstrip('/')}/{name}")
        return s3.opener(parts.netloc, parts.path.lstrip("/"), size)
    local = artifact_uri.removeprefix("file://") if artifact_uri.startswith("file://") else artifact_uri
    if os.path.isabs(local):
        return lambda counter: FileSource(os.path.join(local, *name.split("/")))
    raise RemoteInputError(f"artifacts at {artifact_uri} are in a store modelshield does not read")


def target(uri: str, client: Any) -> Target:
    models, runs = _MODELS.match(uri), _RUNS.match(uri)
    if models is None and runs is None:
        raise RemoteInputError(
            f"malformed MLflow address {uri!r}: expected models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN/PATH"
        )
    try:
        from mlflow import MlflowClient  # noqa: PLC0415 - optional (the `mlflow` extra)
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository  # noqa: PLC0415
    except ImportError:
        raise RemoteUnavailable("scanning MLflow models needs mlflow: pip install 'modelshield[mlflow]'") from None
    sub = ((models or runs).group("path") or "").strip("/")  # type: ignore[union-attr]
    if sub and (escape_reason(sub) or any(p in ("", ".", "..") for p in sub.split("/"))):
        raise RemoteInputError(f"malformed MLflow address {uri!r}: the path {sub!r} is not plain")
    try:
        if models is not None:
            name, version = models.group("name"), models.group("version")
            mlflow_client = MlflowClient()
            if version is None:
                version = str(mlflow_client.get_model_version_by_alias(name, models.group("alias")).version)
            underlying = str(mlflow_client.get_model_version_download_uri(name, version))
            root, revision = f"models:/{name}/{version}", version
        else:
            from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository  # noqa: PLC0415

            underlying = str(RunsArtifactRepository.get_underlying_uri(f"runs:/{runs.group('run')}"))  # type: ignore[union-attr]
            root, revision = f"runs:/{runs.group('run')}", runs.group("run")  # type: ignore[union-attr]
        repo = get_artifact_repository(underlying)
        listed: list[tuple[str, int]] = []
        _walk(repo, sub or None, listed)
        if not listed and sub:  # a single file: its parent lists it
            parent = sub.rpartition("/")[0] or None
            listed = [(p, s) for p, s in _list_parent(repo, parent) if p == sub]
    except RemoteInputError:
        raise
    except Exception as exc:
        raise _error(exc, uri) from None
    if not listed:
        raise RemoteInputError(f"cannot list {uri}: no artifacts there")
    files = []
    for name, size in sorted(listed):
        if escape_reason(name) or any(p in ("", ".", "..") for p in name.split("/")):
            raise RemoteInputError(f"{uri} lists an artifact whose path is not plain: {name!r}")
        files.append(RemoteFile(name, size, None, _opener(underlying, repo, name, size, client)))
    select = sub if sub else ""
    return Target(uri, root, files, revision, 1, select)


def _list_parent(repo: Any, parent: str | None) -> list[tuple[str, int]]:
    return [(i.path, int(i.file_size or 0)) for i in repo.list_artifacts(parent) if not i.is_dir]
