"""Several gateway processes on one database and one store: `serve --workers 2` behind one port, and
separate `serve` processes. Concurrent first requests for a revision cause one upstream fetch and one
scan across all of them (the lease in the database), every process blocks what the verdict blocks, and
a lease left by a process killed mid-fetch is taken over: the revision is judged, never served before."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from huggingface_hub import hf_hub_download

from modelshield.gateway import app as gateway_app
from modelshield.gateway.db import Database, leases
from tests.gateway.conftest import Gateway, benign_repo, malicious_repo
from tests.gateway.test_gateway import _files, _get, _resolve_gets
from tests.sources.hubserver import HubServer

STARTED = "Application startup complete."


def _slow(hub: HubServer, seconds: float) -> None:
    """Every upstream answer about a repository (info, each file) takes `seconds` more: the fetch holds
    its lease long enough for the other processes' requests to arrive meanwhile."""
    real: Callable[[str, str], Any] = hub.repo

    def repo(name: str, revision: str) -> Any:
        time.sleep(seconds)
        return real(name, revision)

    hub.repo = repo  # type: ignore[method-assign]


def _start(gateway: Gateway, workers: int) -> Gateway:
    """Start and wait until every worker's application is up (each logs its own start)."""
    gateway.options += ["--workers", str(workers)]
    gateway.start()
    deadline = time.monotonic() + 30
    while len(gateway.events(STARTED)) < workers:
        assert time.monotonic() < deadline, gateway.log_path.read_text()
        time.sleep(0.1)
    return gateway


def _in_parallel(count: int, task: Callable[[int], Any]) -> list[Any]:
    """Run task(0..count-1) in threads released together; each result, or the exception it raised."""
    results: list[Any] = [None] * count
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = task(index)
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def _lease_rows(url: str) -> list[tuple[Any, ...]]:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sqlalchemy.select(leases))]
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_fetch_and_scan_once(
    backend: str, hub: HubServer, gateway: Gateway, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "postgresql":
        gateway.database = request.getfixturevalue("postgres_url")
    source = benign_repo(tmp_path / "benign")
    commit = hub.add_repo("org/benign", source, private=True)
    _slow(hub, 0.3)
    token = gateway.add_token("research")
    _start(gateway, 2)
    names = sorted(_files(source))

    def client(index: int) -> Any:
        name = names[index % len(names)]
        if index % 2:  # what huggingface_hub asks before a download, on a connection of its own
            status, headers, _body = _get(f"{gateway.url}/org/benign/resolve/main/{name}", token, "HEAD")
            return status, headers.get("x-repo-commit")
        path = hf_hub_download("org/benign", name, endpoint=gateway.url, token=token, cache_dir=tmp_path / f"c{index}")
        return name, Path(path).read_bytes()

    results = _in_parallel(16, client)
    assert results[1::2] == [(200, commit)] * 8
    assert results[0::2] == [
        (names[i % len(names)], (source / names[i % len(names)]).read_bytes()) for i in range(0, 16, 2)
    ]
    assert len(gateway.events("fetch")) == 1 and len(gateway.events("scan")) == 1  # across both processes
    assert sorted(_resolve_gets(hub, "org/benign")) == sorted(f"/org/benign/resolve/{commit}/{n}" for n in names)
    # The process that did not fetch waited on the other's lease (in one process, the asyncio lock queues).
    waits = {e["holder"] for e in gateway.events("lease wait")}
    assert waits and len(gateway.events("lease taken over")) == 0
    assert _lease_rows(gateway.db) == []  # released


def _metrics(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:  # a new connection: any worker
        text = answer.read().decode()
    return {key: int(value) for key, value in re.findall(r"^(\S+) (\d+)$", text, re.MULTILINE)}


def test_both_workers_block_a_malicious_repo(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    hub.add_repo("org/evil", malicious_repo(tmp_path / "evil"), private=True)
    token = gateway.add_token("research")
    _start(gateway, 2)
    answers = [_get(f"{gateway.url}/org/evil/resolve/main/config.json", token) for _ in range(24)]
    assert {status for status, _headers, _body in answers} == {403}
    assert all("PKL001" in headers["x-error-message"] for _status, headers, _body in answers)
    assert len(gateway.events("scan")) == 1
    # Each worker counts its own decisions: the one that scanned (scans 1) and the other (scans 0).
    seen: dict[int, int] = {}
    for _ in range(60):
        metrics = _metrics(gateway.url)
        seen[metrics["modelshield_gateway_scans_total"]] = metrics.get(
            'modelshield_gateway_decisions_total{action="serve",decision="block"}', 0
        )
        if len(seen) == 2:
            break
    assert set(seen) == {0, 1} and all(seen.values()) and sum(seen.values()) == 24


def test_a_stale_lease_is_taken_over_never_served_before(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    source = benign_repo(tmp_path / "benign")
    commit = hub.add_repo("org/benign", source, private=True)
    token = gateway.add_token("research")
    gateway.options += ["--lease-timeout", "2"]
    # A process that died holding the lease, a moment ago (its heartbeat is still fresh).
    database = Database(gateway.db)
    with database.engine.begin() as conn:
        conn.execute(
            sqlalchemy.insert(leases).values(
                repo="org/benign", commit_id=commit, holder="gone:1", heartbeat=time.time()
            )
        )
    database.engine.dispose()
    gateway.start()
    answer: list[Any] = []
    asking = threading.Thread(
        target=lambda: answer.append(_get(f"{gateway.url}/org/benign/resolve/main/config.json", token))
    )
    asking.start()
    time.sleep(0.5)
    assert answer == [] and gateway.events("scan") == [] and _resolve_gets(hub, "org/benign") == []  # waiting
    asking.join(60)
    assert answer[0][0] == 200 and answer[0][2] == (source / "config.json").read_bytes()
    logged = [json.loads(line) for line in gateway.log_path.read_text().splitlines() if line.startswith("{")]
    order = [e["event"] for e in logged if e["event"] in ("lease taken over", "fetch", "scan", "decision")]
    assert order == ["lease taken over", "fetch", "scan", "decision", "decision"]  # scan, then serve
    assert gateway.events("lease taken over")[0]["stale"] == "gone:1"
    assert _lease_rows(gateway.db) == []


def test_a_process_killed_mid_fetch_is_taken_over(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    source = benign_repo(tmp_path / "benign")
    commit = hub.add_repo("org/benign", source, private=True)
    _slow(hub, 1.0)
    token = gateway.add_token("research")
    gateway.options += ["--lease-timeout", "2"]
    gateway.start()
    first: list[Any] = []

    def ask() -> None:
        try:
            first.append(_get(f"{gateway.url}/org/benign/resolve/main/config.json", token))
        except OSError as exc:  # the process was killed while the request waited on it
            first.append(exc)

    asking = threading.Thread(target=ask)
    asking.start()
    deadline = time.monotonic() + 30
    while not _lease_rows(gateway.db):  # the first process is fetching
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert gateway.process is not None
    gateway.process.kill()
    gateway.process.wait(10)
    asking.join(30)
    assert len(first) == 1 and isinstance(first[0], OSError)  # the killed process never answered the file
    other = Gateway(hub.url, gateway.workdir, options=["--lease-timeout", "2"]).start()  # same database, store
    try:
        status, headers, body = _get(f"{other.url}/org/benign/resolve/main/model.safetensors", token)
        assert status == 200 and headers["x-repo-commit"] == commit
        assert body == (source / "model.safetensors").read_bytes()
        taken = other.events("lease taken over")
        assert len(taken) == 1 and len(other.events("scan")) == 1
        assert _lease_rows(gateway.db) == []
    finally:
        other.stop()


def test_a_branch_is_refreshed_once_however_many_ask(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit = hub.add_repo("org/benign", benign_repo(tmp_path / "benign"))
    _slow(hub, 0.2)
    config = gateway_app.Config(hub.url, f"sqlite:///{tmp_path / 'gw.db'}", str(tmp_path / "store"))
    monkeypatch.setattr(gateway_app, "REF_TTL", 0.0)  # every known commit is due for a refresh

    def infos() -> int:
        return sum(1 for r in hub.requests if r.path.startswith("/api/models/org/benign/revision/main"))

    async def ask(gateway: gateway_app.Gateway) -> list[str]:
        answers = await asyncio.gather(*(gateway.commit("org/benign", "main") for _ in range(20)))
        return [found for found, _info in answers]

    async def run() -> None:
        gateway = gateway_app.Gateway(config)
        try:
            assert await ask(gateway) == [commit] * 20  # nothing known yet: all wait on the one request
            assert infos() == 1
            assert await ask(gateway) == [commit] * 20  # known but due: one refreshes, the others go on
            assert infos() == 2
        finally:
            await gateway.upstream.close()

    asyncio.run(run())


def test_a_dead_worker_is_logged_and_the_others_serve(hub: HubServer, gateway: Gateway, tmp_path: Path) -> None:
    source = benign_repo(tmp_path / "benign")
    hub.add_repo("org/benign", source)
    gateway.anonymous = True
    _start(gateway, 2)
    pids = gateway.events("workers")[0]["pids"]
    assert len(pids) == 2 and gateway.process is not None and gateway.process.pid not in pids
    os.kill(pids[0], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while not gateway.events("worker died"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    died = gateway.events("worker died")
    assert [(e["pid"], e["exitcode"], e["running"]) for e in died] == [(pids[0], -signal.SIGKILL, 1)]
    for _ in range(10):  # new connections all reach the worker left (the dead one's socket went with it)
        status, _headers, body = _get(f"{gateway.url}/org/benign/resolve/main/config.json")
        assert status == 200 and body == (source / "config.json").read_bytes()
    gateway.process.terminate()  # passed on to the worker left
    assert gateway.process.wait(20) == 3  # a worker had died
    with pytest.raises(ProcessLookupError):
        os.kill(pids[1], 0)
