"""S3 objects and prefixes, `s3://BUCKET/KEY-or-PREFIX`, read by ranged GETs with boto3 (the `s3` extra).

Credentials, region and endpoint come from boto3's own chain (`AWS_PROFILE`, `AWS_ACCESS_KEY_ID`,
`AWS_ENDPOINT_URL` for S3-compatible stores...). A key that exists is one file; otherwise the key is a
prefix and every object under it is listed (as a folder). The cache key is the object's SHA-256 checksum
when it has one, else its ETag with its size.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from modelshield.core.errors import ScanError
from modelshield.core.paths import escape_reason
from modelshield.core.source import Source
from modelshield.sources import RemoteFile, RemoteInputError, RemoteUnavailable, Target
from modelshield.sources.http import Counter, RangeSource

_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<key>.*))?$")
MAX_OBJECTS = 10_000


class _Response:
    """A ranged GetObject answer shaped like the HTTP responses `RangeSource` reads."""

    status_code = 206

    def __init__(self, answer: dict[str, Any]) -> None:
        self.headers = {"content-range": str(answer.get("ContentRange", ""))}
        self._body = answer["Body"]

    def iter_raw(self) -> Iterator[bytes]:
        try:
            yield from self._body.iter_chunks(256 * 1024)
        except Exception as exc:
            raise ScanError(f"transfer failed: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._body.close()


class _Fetch:
    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self.client, self.bucket, self.key = client, bucket, key

    def open(self, extra: dict[str, str]) -> _Response:
        try:
            return _Response(self.client.get_object(Bucket=self.bucket, Key=self.key, Range=extra["Range"]))
        except Exception as exc:
            raise ScanError(f"transfer of s3://{self.bucket}/{self.key} failed: {type(exc).__name__}: {exc}") from exc


def _client() -> Any:
    try:
        import boto3  # noqa: PLC0415 - optional (the `s3` extra)
    except ImportError:
        raise RemoteUnavailable("scanning S3 needs boto3: pip install 'modelshield[s3]'") from None
    return boto3.client("s3")


def _error(exc: Exception, uri: str) -> RemoteInputError:
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    if code in ("NoSuchBucket", "404", "NotFound"):
        return RemoteInputError(f"cannot list {uri}: no such bucket or key")
    if (
        code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch")
        or "NoCredentials" in type(exc).__name__
    ):
        return RemoteInputError(
            f"cannot list {uri}: access denied ({code or type(exc).__name__}): set AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY to credentials that can read it"
        )
    return RemoteInputError(f"cannot list {uri}: {type(exc).__name__}: {exc}")


def _digest(entry: dict[str, Any]) -> str | None:
    checksum = entry.get("ChecksumSHA256")
    if checksum:
        return f"s3-sha256:{checksum}"
    etag = str(entry.get("ETag", "")).strip('"')
    return f"etag:{etag}:{entry.get('Size', entry.get('ContentLength'))}" if etag else None


def opener(bucket: str, key: str, size: int, client: Any = None) -> Callable[[Counter], Source]:
    """Opens the object by ranged GETs (with boto3's default client unless given one)."""

    def open_object(counter: Counter) -> Source:
        fetch = _Fetch(client or _client(), bucket, key)
        return RangeSource(fetch, size, f"s3://{bucket}/{key}", counter)

    return open_object


def target(uri: str) -> Target:
    found = _URI.match(uri)
    if found is None:
        raise RemoteInputError(f"malformed S3 address {uri!r}: expected s3://BUCKET/KEY-or-PREFIX")
    bucket, key = found.group("bucket"), found.group("key") or ""
    client = _client()
    requests = 1
    objects: list[tuple[str, dict[str, Any]]] = []
    try:
        if key and not key.endswith("/"):
            try:
                head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
                objects.append((key, {**head, "Size": head["ContentLength"]}))
            except Exception as exc:
                if str(getattr(exc, "response", {}).get("Error", {}).get("Code", "")) not in ("404", "NotFound"):
                    raise
        if not objects:
            prefix = key.rstrip("/") + "/" if key else ""
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                requests += 1
                objects += [(o["Key"], o) for o in page.get("Contents", []) if not o["Key"].endswith("/")]
                if len(objects) > MAX_OBJECTS:
                    raise RemoteInputError(f"{uri} holds more than {MAX_OBJECTS} objects; scan a narrower prefix")
            key = prefix
    except RemoteInputError:
        raise
    except Exception as exc:
        raise _error(exc, uri) from None
    if not objects:
        raise RemoteInputError(f"cannot list {uri}: no such key, and no object under that prefix")
    single = len(objects) == 1 and objects[0][0] == key
    base = key.rpartition("/")[0] if single else key.rstrip("/")
    files = []
    for name, entry in sorted(objects):
        relative = name[len(base) + 1 :] if base else name
        if escape_reason(relative) or any(p in ("", ".", "..") for p in relative.split("/")):
            raise RemoteInputError(f"{uri} holds an object whose key is not a plain path: {name!r}")

        files.append(
            RemoteFile(relative, int(entry["Size"]), _digest(entry), opener(bucket, name, int(entry["Size"]), client))
        )
    root = f"s3://{bucket}" + (f"/{base}" if base else "")
    return Target(uri, root, files, None, requests, files[0].name if single else "")
