"""Remote scans (`modelshield.sources`) against the local Hub-compatible server of tests/sources/hubserver.py.

Inputs, generated in a temporary folder: a 1 GiB PyTorch zip checkpoint (written by torch.save in the
torch environment given by --torch-python), a 1 GiB safetensors file, and a 20-file repository (config,
tokenizer files, an index and safetensors shards). Each is served on loopback as a Hub repository with
LFS redirects to a second "storage" server, and scanned through huggingface_hub's API and range requests.

Measured: wall time of `modelshield.scan("hf://...")` in this process (median of --runs, without the
verdict cache), bytes fetched as the report records them, requests the servers saw; then the same
repository again with the verdict cache (requests seen). With --modelaudit, ModelAudit's `hf://` scan of
the same repositories (it downloads them first) from its own virtual environment.

    python bench/remote.py [--runs 5] [--modelaudit /work/envs/remote-peers/bin/modelaudit]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.sources.hubserver import HubServer  # noqa: E402

from modelshield import api  # noqa: E402

GiB = 1024**3
TORCH_SCRIPT = """
import sys, torch
tensors = {f"layer{i}.weight": torch.ones(4096, 4096) for i in range(16)}  # 16 x 64 MiB float32
torch.save(tensors, sys.argv[1])
"""


def make_inputs(folder: Path, torch_python: str) -> dict[str, Path]:
    import numpy as np
    from safetensors.numpy import save_file

    repos = {name: folder / name for name in ("torch", "safetensors", "twenty")}
    for path in repos.values():
        path.mkdir()
    subprocess.run([torch_python, "-c", TORCH_SCRIPT, str(repos["torch"] / "pytorch_model.bin")], check=True)
    big = {f"layer{i}.weight": np.ones((4096, 4096), dtype=np.float32) for i in range(16)}
    save_file(big, str(repos["safetensors"] / "model.safetensors"))
    del big
    twenty = repos["twenty"]
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 1024}
    (twenty / "config.json").write_text(json.dumps(config))
    (twenty / "generation_config.json").write_text(json.dumps({"max_length": 128}))
    (twenty / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 2048}))
    (twenty / "special_tokens_map.json").write_text(json.dumps({"bos_token": "<s>"}))
    weight_map = {}
    for i in range(15):
        name = f"model-{i + 1:05d}-of-00015.safetensors"
        save_file({f"layers.{i}.weight": np.ones((1024, 1024), dtype=np.float32)}, str(twenty / name))
        weight_map[f"layers.{i}.weight"] = name
    index = {"metadata": {"total_size": 15 * 4 * 1024 * 1024}, "weight_map": weight_map}
    (twenty / "model.safetensors.index.json").write_text(json.dumps(index))
    assert len(list(twenty.iterdir())) == 20
    return repos


def _model_requests(hub: HubServer) -> int:
    return sum("agent-harnesses" not in r.path for r in hub.requests)


def measure(hub: HubServer, repo: str, folder: Path, runs: int) -> dict[str, object]:
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    times, fetched, requests, verdict = [], 0, 0, None
    for _ in range(runs):
        hub.requests.clear()
        started = time.perf_counter()
        report = api.scan(f"hf://{repo}", cache=False)
        times.append(time.perf_counter() - started)
        fetched = sum(int((r.remote or {}).get("bytes_fetched", 0)) for r in report.files)
        requests = _model_requests(hub)
        verdict = report.exit_code
    api.scan(f"hf://{repo}")  # fills the verdict cache
    hub.requests.clear()
    started = time.perf_counter()
    cached = api.scan(f"hf://{repo}")
    cached_seconds = time.perf_counter() - started
    return {
        "repo": repo,
        "files": len(report.files),
        "bytes": size,
        "median_s": round(statistics.median(times), 3),
        "bytes_fetched": fetched,
        "fetched_pct": round(100 * fetched / size, 4),
        "requests": requests,
        "exit_code": verdict,
        "cached_s": round(cached_seconds, 3),
        "cached_requests": _model_requests(hub),
        "cached_exit_code": cached.exit_code,
    }


def modelaudit(binary: str, hub: HubServer, repo: str, home: Path) -> dict[str, object]:
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HOME": str(home), "HF_HOME": str(home / "hf")}
    env |= {"PROMPTFOO_DISABLE_TELEMETRY": "1", "NO_ANALYTICS": "1", "NO_COLOR": "1"}
    hub.requests.clear()
    hub.bytes_sent = 0
    started = time.perf_counter()
    done = subprocess.run(
        [binary, "scan", "--no-cache", f"hf://{repo}"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    seconds = time.perf_counter() - started
    shutil.rmtree(home / "hf", ignore_errors=True)
    shutil.rmtree(home / ".modelaudit", ignore_errors=True)
    return {
        "repo": repo,
        "seconds": round(seconds, 2),
        "exit_code": done.returncode,
        "requests": _model_requests(hub),
        "storage_requests": sum(r.server == "storage" for r in hub.requests),
        "bytes_sent": hub.bytes_sent,
        "tail": (done.stdout + done.stderr).strip().splitlines()[-1:] if (done.stdout + done.stderr).strip() else [],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--torch-python", default="/work/envs/torch/bin/python")
    parser.add_argument("--modelaudit", help="ModelAudit's `modelaudit` executable, to compare")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="modelshield-bench-remote-") as tmp:
        folder = Path(tmp)
        os.environ["MODELSHIELD_CACHE_DIR"] = str(folder / "cache")
        os.environ["HF_HOME"] = str(folder / "hf-home")
        os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
        repos = make_inputs(folder, args.torch_python)
        with HubServer() as hub:
            os.environ["HF_ENDPOINT"] = hub.url
            for name, path in repos.items():
                hub.add_repo(f"bench/{name}", path)
            api.scan("hf://bench/twenty", cache=False)  # warm-up: imports, huggingface_hub's first request
            rows = [measure(hub, f"bench/{name}", path, args.runs) for name, path in repos.items()]
            for row in rows:
                print(json.dumps(row))
            if args.modelaudit:
                home = folder / "home"
                home.mkdir()
                for name in repos:
                    print(json.dumps({"modelaudit": modelaudit(args.modelaudit, hub, f"bench/{name}", home)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
