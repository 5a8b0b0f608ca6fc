"""Gateway load test (issue 17): 50 concurrent clients over a 20-file repository, on loopback only.

The upstream (tests/sources/hubserver.py) runs in its own process, the gateway (`modelshield serve
--anonymous --workers N`, this checkout's `src`) in N others, the clients (asyncio) in this one. Phases:

1. uncached: every client asks for every file of a revision the gateway has never seen (one fetch and
   one scan must serve them all);
2. cached decisions: HEAD requests (what huggingface_hub asks before each download), latency p50/p99,
   with every client at once and with one client. A lean HTTP/1.1 client (one keep-alive connection
   per client, status line and headers parsed by hand) so that the numbers are the gateway's, not the
   client library's per-request CPU on the same cores;
3. cached file serving: every client downloads every file through the gateway (httpx), then the same
   straight from the upstream; throughput compared.

Every answer is checked (GET: status and the body's SHA-256; HEAD: status, X-Repo-Commit is the
revision's commit and ETag the file's): nothing lost, no wrong answer.

    python bench/gateway_load.py [--clients 50] [--heads 20] [--mib 4] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

import httpx  # noqa: E402
from tests.gateway.conftest import Gateway, _env  # noqa: E402
from tests.sources.hubserver import HubServer, git_blob_id  # noqa: E402

REPO = "bench/model"
LFS_THRESHOLD = HubServer.lfs_threshold


def etags(folder: Path, files: dict[str, str]) -> dict[str, str]:
    """The ETag the Hub gives each file: the sha256 of LFS files, the git blob id of small ones."""
    small = {name: (folder / name).read_bytes() for name in files if (folder / name).stat().st_size < LFS_THRESHOLD}
    return {name: git_blob_id(small[name]) if name in small else sha for name, sha in files.items()}


def make_repo(folder: Path, mib: int) -> dict[str, str]:
    """18 tensor files of `mib` MiB (float32 safetensors), a config and a vocabulary: 20 files."""
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    rng = np.random.default_rng(17)
    for i in range(18):
        weights = rng.standard_normal(mib * 2**18).astype(np.float32)
        save_file({f"layer.{i}.weight": weights}, str(folder / f"model-{i:05d}-of-00018.safetensors"))
    (folder / "config.json").write_text('{"model_type": "bert", "architectures": ["BertModel"]}')
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n" + "\n".join(f"w{i}" for i in range(5000)))
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def serve_upstream(folder: str) -> None:
    """Child process: the Hub-compatible upstream, until stdin closes."""
    from tests.sources.hubserver import HubServer

    hub = HubServer().start()
    commit = hub.add_repo(REPO, folder)
    print(hub.url, commit, hub.storage_url.removeprefix("http://"), flush=True)  # the gateway may follow it there
    sys.stdin.read()
    hub.stop()


async def _get(client: httpx.AsyncClient, url: str, want: str) -> tuple[float, bool, int]:
    start = time.perf_counter()
    digest, size = hashlib.sha256(), 0
    try:
        async with client.stream("GET", url) as answer:
            async for chunk in answer.aiter_bytes(1 << 20):
                digest.update(chunk)
                size += len(chunk)
            ok = answer.status_code == 200 and digest.hexdigest() == want
    except httpx.TransportError:  # a dropped connection is a lost request: counted, not retried
        ok = False
    return time.perf_counter() - start, ok, size


async def phase(base: str, files: dict[str, str], clients: int) -> dict[str, float]:
    """Every client downloads every file, 20 files each, all clients at once."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=600, follow_redirects=True) as client:

        async def one_client(index: int) -> list[tuple[float, bool, int]]:
            names = list(files)
            names = names[index % len(names) :] + names[: index % len(names)]  # not all on the same file
            return [await _get(client, f"{base}/{REPO}/resolve/main/{name}", files[name]) for name in names]

        start = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(one_client(i) for i in range(clients))) for r in rs]
        wall = time.perf_counter() - start
    return summary(results, wall)


async def _head_client(
    host: str, port: int, names: list[str], expect: dict[str, str], commit: str
) -> list[tuple[float, bool, int]]:
    """HEAD each name in turn on one keep-alive connection; a dropped connection loses its request (counted,
    the client reconnects for the next)."""
    out: list[tuple[float, bool, int]] = []
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    for name in names:
        request = f"HEAD /{REPO}/resolve/main/{name} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        start = time.perf_counter()
        try:
            if connection is None:
                connection = await asyncio.open_connection(host, port)
            reader, writer = connection
            writer.write(request)
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            elapsed = time.perf_counter() - start
            fields = dict(line.split(":", 1) for line in head[1:] if ":" in line)
            headers = {key.strip().lower(): value.strip() for key, value in fields.items()}
            status = int(head[0].split()[1])
            if status != 200:  # an error answer has a body: read it to keep the connection in step
                await reader.readexactly(int(headers.get("content-length", "0")))
            ok = status == 200 and headers.get("x-repo-commit") == commit and headers.get("etag") == f'"{expect[name]}"'
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            elapsed, ok, connection = time.perf_counter() - start, False, None
        out.append((elapsed, ok, 0))
    if connection is not None:
        connection[1].close()
    return out


async def head_phase(base: str, expect: dict[str, str], commit: str, clients: int, rounds: int) -> dict[str, float]:
    """Every client HEADs every file `rounds` times, closed loop, all clients at once."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    names = list(expect)
    start = time.perf_counter()
    batches = await asyncio.gather(
        *(
            _head_client(host, int(port), (names[i % len(names) :] + names[: i % len(names)]) * rounds, expect, commit)
            for i in range(clients)
        )
    )
    return summary([r for batch in batches for r in batch], time.perf_counter() - start)


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of these processes so far (Linux /proc; the gateway's workers)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def summary(results: list[tuple[float, bool, int]], wall: float) -> dict[str, float]:
    latencies = sorted(r[0] for r in results)
    return {
        "requests": len(results),
        "wrong": sum(not r[1] for r in results),
        "seconds": wall,
        "rps": len(results) / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "mib_s": sum(r[2] for r in results) / wall / 2**20,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--heads", type=int, default=20, help="HEAD rounds per client (x20 files)")
    parser.add_argument("--mib", type=int, default=4, help="size of each tensor file")
    parser.add_argument("--workers", type=int, default=1, help="gateway processes (serve --workers)")
    parser.add_argument("--serve-upstream", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return 0
    with tempfile.TemporaryDirectory(prefix="gateway-load-") as tmp:
        files = make_repo(Path(tmp) / "repo", args.mib)
        upstream = subprocess.Popen(
            [sys.executable, __file__, "--serve-upstream", str(Path(tmp) / "repo")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_env(),
            text=True,
        )
        assert upstream.stdout is not None and upstream.stdin is not None
        url, commit, storage = upstream.stdout.readline().split()
        expect = etags(Path(tmp) / "repo", files)
        (Path(tmp) / "gw").mkdir()
        options = ["--workers", str(args.workers), "--upstream-host", storage]
        gateway = Gateway(url, Path(tmp) / "gw", anonymous=True, options=options).start()
        try:
            workers = gateway.events("workers")
            assert gateway.process is not None
            pids = workers[0]["pids"] if workers else [gateway.process.pid]

            def measured(run: Coroutine[Any, Any, dict[str, float]]) -> dict[str, float]:
                """The phase, and the CPU the gateway's processes and this client spent per request."""
                gateway_cpu, client_cpu = cpu_seconds(pids), time.process_time()
                result = asyncio.run(run)
                result["gateway_us"] = 1e6 * (cpu_seconds(pids) - gateway_cpu) / result["requests"]
                result["client_us"] = 1e6 * (time.process_time() - client_cpu) / result["requests"]
                return result

            rows = [
                ("uncached: first requests, one fetch and one scan", measured(phase(gateway.url, files, args.clients))),
                (
                    f"cached decisions (HEAD), {args.clients} clients at once",
                    measured(head_phase(gateway.url, expect, commit, args.clients, args.heads)),
                ),
                (  # the cost of one decision without the queue that 50 clients at once build
                    "cached decisions (HEAD), one client",
                    measured(head_phase(gateway.url, expect, commit, 1, 10 * args.heads)),
                ),
                ("cached files through the gateway", measured(phase(gateway.url, files, args.clients))),
                ("the same files from the upstream directly", measured(phase(url, files, args.clients))),
            ]
            scans, fetches = len(gateway.events("scan")), len(gateway.events("fetch"))
        finally:
            gateway.stop()
            upstream.stdin.close()
            upstream.wait(30)
    total = sum(1 for _ in files)
    print(
        f"{args.clients} clients, {total} files ({args.mib} MiB tensors), --workers {args.workers}, "
        f"scans {scans}, fetches {fetches}"
    )
    print(
        "| phase | requests | wrong or lost | wall s | requests/s | p50 ms | p99 ms | MiB/s "
        "| gateway CPU µs/req | client CPU µs/req |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows:
        print(
            f"| {name} | {r['requests']:.0f} | {r['wrong']:.0f} | {r['seconds']:.2f} | {r['rps']:.0f} "
            f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['mib_s']:.0f} "
            f"| {r['gateway_us']:.0f} | {r['client_us']:.0f} |"
        )
    ratio = rows[3][1]["mib_s"] / rows[4][1]["mib_s"]
    print(f"cached gateway throughput / upstream direct: {ratio:.2f}")
    return 1 if any(r["wrong"] for _name, r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
