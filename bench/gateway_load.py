"""Gateway load test (issue 17): 50 concurrent clients over a 20-file repository, on loopback only.

The upstream (tests/sources/hubserver.py) runs in its own process, the gateway (`modelshield serve
--anonymous`, this checkout's `src`) in another, the clients (httpx, asyncio) in this one. Phases:

1. uncached: every client asks for every file of a revision the gateway has never seen (one fetch and
   one scan must serve them all);
2. cached decisions: HEAD requests (what huggingface_hub asks before each download), latency p50/p99,
   with every client at once and with one client;
3. cached file serving: every client downloads every file through the gateway, then the same straight
   from the upstream; throughput compared.

Every answer is checked (status, and the body's SHA-256 against the file): nothing lost, no wrong answer.

    python bench/gateway_load.py [--clients 50] [--heads 40] [--mib 4]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

import httpx  # noqa: E402
from tests.gateway.conftest import Gateway, _env  # noqa: E402

REPO = "bench/model"


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
    hub.add_repo(REPO, folder)
    print(hub.url, hub.storage_url.removeprefix("http://"), flush=True)  # the gateway may follow it there
    sys.stdin.read()
    hub.stop()


async def _get(client: httpx.AsyncClient, url: str, want: str | None, method: str = "GET") -> tuple[float, bool, int]:
    start = time.perf_counter()
    digest, size = hashlib.sha256(), 0
    try:
        async with client.stream(method, url) as answer:
            async for chunk in answer.aiter_bytes(1 << 20):
                digest.update(chunk)
                size += len(chunk)
            ok = answer.status_code == 200 and (want is None or digest.hexdigest() == want)
    except httpx.TransportError:  # a dropped connection is a lost request: counted, not retried
        ok = False
    return time.perf_counter() - start, ok, size


async def phase(
    base: str, files: dict[str, str], clients: int, method: str = "GET", rounds: int = 1
) -> dict[str, float]:
    """Every client asks for every file (`rounds` times), 20 files each round, all clients at once."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=600, follow_redirects=True) as client:

        async def one_client(index: int) -> list[tuple[float, bool, int]]:
            names = list(files)
            names = names[index % len(names) :] + names[: index % len(names)]  # not all on the same file
            out = []
            for _ in range(rounds):
                for name in names:
                    want = files[name] if method == "GET" else None
                    out.append(await _get(client, f"{base}/{REPO}/resolve/main/{name}", want, method))
            return out

        start = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(one_client(i) for i in range(clients))) for r in rs]
        wall = time.perf_counter() - start
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
    parser.add_argument("--heads", type=int, default=2, help="HEAD rounds per client (x20 files)")
    parser.add_argument("--mib", type=int, default=4, help="size of each tensor file")
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
        url, storage = upstream.stdout.readline().split()
        (Path(tmp) / "gw").mkdir()
        gateway = Gateway(url, Path(tmp) / "gw", anonymous=True, options=["--upstream-host", storage]).start()
        try:
            rows = [
                (
                    "uncached: first requests, one fetch and one scan",
                    asyncio.run(phase(gateway.url, files, args.clients)),
                ),
                (
                    f"cached decisions (HEAD), {args.clients} clients at once",
                    asyncio.run(phase(gateway.url, files, args.clients, "HEAD", args.heads)),
                ),
                (  # the cost of one decision without the queue that 50 clients at once build
                    "cached decisions (HEAD), one client",
                    asyncio.run(phase(gateway.url, files, 1, "HEAD", 10)),
                ),
                ("cached files through the gateway", asyncio.run(phase(gateway.url, files, args.clients))),
                ("the same files from the upstream directly", asyncio.run(phase(url, files, args.clients))),
            ]
            scans, fetches = len(gateway.events("scan")), len(gateway.events("fetch"))
        finally:
            gateway.stop()
            upstream.stdin.close()
            upstream.wait(30)
    total = sum(1 for _ in files)
    print(f"{args.clients} clients, {total} files ({args.mib} MiB tensors), scans {scans}, fetches {fetches}")
    print("| phase | requests | wrong or lost | wall s | requests/s | p50 ms | p99 ms | MiB/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows:
        print(
            f"| {name} | {r['requests']:.0f} | {r['wrong']:.0f} | {r['seconds']:.2f} | {r['rps']:.0f} "
            f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['mib_s']:.0f} |"
        )
    ratio = rows[3][1]["mib_s"] / rows[4][1]["mib_s"]
    print(f"cached gateway throughput / upstream direct: {ratio:.2f}")
    return 1 if any(r["wrong"] for _name, r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
