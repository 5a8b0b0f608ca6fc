"""False-alarm survey: scan the model files that real PyPI releases ship, and count what fails the gate.

    python bench/survey.py                      # download what is missing, extract, scan, print tables
    python bench/survey.py --offline            # the same from the cache alone (no network)
    python bench/survey.py --json out.json      # also write every file's verdict and failing findings
    python bench/survey.py --modelshield "python -m modelshield" --jobs 2

Releases are pinned in bench/survey_packages.toml (name==version, wheel or sdist, and why). Each is
fetched once from PyPI's simple index (PEP 691 JSON, sha256 checked) into the cache folder
(~/.cache/modelshield-survey by default), walked member by member (nested zips, tars and the usual
compressed streams included), and every member whose BYTES look like a format modelshield covers is
kept, whatever its name. The kept files are scanned by the modelshield CLI (`scan --format json`, many
files per process) and judged at the default gate. Nothing here loads a model: sniffing reads magic
numbers and parses headers only (pickles are walked with pickletools.genops, which builds no object).
"""

from __future__ import annotations

import argparse
import bz2
import contextlib
import gzip
import hashlib
import io
import json
import lzma
import os
import pickletools
import shlex
import struct
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the bench runs on 3.11+
    import tomli as tomllib

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import Version

HERE = Path(__file__).resolve().parent
PACKAGES = HERE / "survey_packages.toml"
DEFAULT_CACHE = Path.home() / ".cache" / "modelshield-survey"
INDEX = "https://pypi.org/simple/{name}/"
#: bump when sniffing changes, so that cached extractions are redone
EXTRACTOR_VERSION = 5
MAX_DIST_BYTES = 300 * 1024 * 1024
MAX_MEMBER_BYTES = 400 * 1024 * 1024
MAX_DEPTH = 3
HEAD = 64 * 1024
SEVERITIES = ("info", "low", "medium", "high", "critical")
#: the wheel tags a CPython 3.11 x86_64 Linux user installs, best first: fixed, not this machine's
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
    "linux_x86_64",
]
WHEEL_TAGS: list[Tag] = [*cpython_tags((3, 11), platforms=PLATFORMS), *compatible_tags((3, 11), platforms=PLATFORMS)]


@dataclass(frozen=True)
class Package:
    """One pinned release and what it ships."""

    name: str
    version: str
    dist: str  # "wheel" or "sdist"
    why: str

    @property
    def key(self) -> str:
        return f"{canonicalize_name(self.name)}-{self.version}-{self.dist}"

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass
class Kept:
    """A member kept as a model file: where it is in the release, its format and its copy on disk."""

    package: str
    inner: str
    fmt: str
    size: int
    disk: str


@dataclass
class Verdict:
    """What the scanner said about one kept file at the gate."""

    kept: Kept
    failed: bool
    max_severity: str | None
    failing: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    scanner_format: str | None = None
    #: False when modelshield listed the file as no model at all (not a false alarm; a coverage gap)
    recognised: bool = True


def load_packages(path: Path = PACKAGES) -> list[Package]:
    """The pinned list; `name==version` is the only accepted spelling of a pin."""
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    packages = []
    for entry in data["package"]:
        name, sep, version = entry["spec"].partition("==")
        if not sep or not version:
            raise SystemExit(f"{path}: {entry['spec']!r} is not pinned as name==version")
        if entry["dist"] not in ("wheel", "sdist"):
            raise SystemExit(f"{path}: {entry['spec']}: dist must be wheel or sdist")
        packages.append(Package(name, version, entry["dist"], entry["why"]))
    return packages


# --- fetching -------------------------------------------------------------------------------------


def choose_file(package: Package, files: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The release file a CPython 3.11 Linux user would get, picked from the index's file list."""
    want = Version(package.version)
    name = canonicalize_name(package.name)
    ranked: list[tuple[int, str, dict[str, Any]]] = []
    for entry in files:
        filename = entry["filename"]
        if entry.get("yanked"):
            continue
        if package.dist == "wheel" and filename.endswith(".whl"):
            wname, wversion, _build, tags = parse_wheel_filename(filename)
            if wname != name or wversion != want:
                continue
            ranks = [WHEEL_TAGS.index(tag) for tag in tags if tag in WHEEL_TAGS]
            if ranks:
                ranked.append((min(ranks), filename, entry))
        elif package.dist == "sdist" and filename.endswith((".tar.gz", ".zip", ".tar.bz2")):
            try:
                sname, sversion = parse_sdist_filename(filename)
            except ValueError:
                continue
            if sname == name and sversion == want:
                ranked.append((0 if filename.endswith(".tar.gz") else 1, filename, entry))
    if not ranked:
        raise LookupError(f"{package.spec}: no {package.dist} for CPython 3.11 x86_64 Linux on PyPI")
    return min(ranked, key=lambda item: item[:2])[2]


def fetch(package: Package, cache: Path, offline: bool) -> Path:
    """The release file in the cache, downloaded from PyPI first if it is missing (sha256 checked)."""
    dists = cache / "dists"
    record = dists / f"{package.key}.json"
    if record.exists():
        cached = dists / str(json.loads(record.read_text())["filename"])
        if cached.exists():
            return cached
    if offline:
        raise LookupError(f"{package.spec}: not in the cache ({record}) and --offline")
    request = urllib.request.Request(
        INDEX.format(name=canonicalize_name(package.name)),
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    chosen = choose_file(package, files)
    if chosen.get("size", 0) > MAX_DIST_BYTES:
        raise LookupError(f"{package.spec}: {chosen['filename']} is over {MAX_DIST_BYTES >> 20} MiB")
    dists.mkdir(parents=True, exist_ok=True)
    path = dists / str(chosen["filename"])
    digest = hashlib.sha256()
    partial = path.with_name(path.name + ".part")
    with urllib.request.urlopen(chosen["url"], timeout=300) as response, partial.open("wb") as out:
        while block := response.read(1 << 20):
            digest.update(block)
            out.write(block)
    if digest.hexdigest() != chosen["hashes"]["sha256"]:
        partial.unlink()
        raise LookupError(f"{package.spec}: sha256 mismatch for {chosen['filename']}")
    partial.replace(path)
    record.write_text(json.dumps({"filename": chosen["filename"], "sha256": chosen["hashes"]["sha256"]}) + "\n")
    return path


# --- sniffing -------------------------------------------------------------------------------------

PICKLE_STARTS = frozenset(b"(]}cKIJFSVXUNQ)\x80")
ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: torch.save before 1.6: a pickled magic number (LONG1 0x1950a86a20f9469cfc6c), then more pickles and raw storages
TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
#: source-code markers: a template inside a program is the program's business, not a shipped template
SOURCE_MARKERS = ("\ndef ", "\nimport ", "\nclass ", "#include", "\nfunction ", "\n.. ")


def _looks_like_pickle(data: bytes, tail: bytes) -> bool:
    """A pickle: a protocol 2+ header, or protocol 0/1 opcodes that pickletools walks to STOP."""
    if not data or data[0] not in PICKLE_STARTS or not tail.endswith(b"."):
        return False
    if data[0] == 0x80:
        return len(data) > 1 and 2 <= data[1] <= 5
    ops = 0
    with contextlib.suppress(Exception):
        for opcode, _arg, _pos in pickletools.genops(io.BytesIO(data)):
            ops += 1
            if opcode.name == "STOP" or ops >= 4096:
                return ops >= 4
    return ops >= 64  # a long walk cut by the end of a head read


def _zip_kind(data: bytes) -> str | None:
    """What a zip holds, from its member names: NumPy npz, PyTorch/TorchScript, Keras v3, or nothing."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return None
    if names and all(name.endswith(".npy") for name in names):
        return "npz"
    if any(name.endswith(("data.pkl", "constants.pkl")) or name.split("/")[-1] == "version" for name in names):
        return "pytorch-zip"
    if "config.json" in names and any(name.endswith(".weights.h5") or name == "model.weights.npz" for name in names):
        return "keras"
    return None


def _text(head: bytes) -> str | None:
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _is_onnx(data: bytes) -> bool:
    """An ONNX ModelProto: starts with the ir_version field and parses with a graph and an opset."""
    if len(data) < 8 or data[0] != 0x08 or not 1 <= data[1] <= 20 or b"\x3a" not in data[:4096]:
        return False
    import onnx  # the reference parser: protobuf decoding only, never external data

    try:
        model = onnx.ModelProto.FromString(data)
    except Exception:
        return False
    return model.HasField("graph") and len(model.opset_import) > 0 and len(model.graph.node) > 0


def sniff(name: str, data: bytes) -> str | None:
    """The covered format `data` is in, from its bytes (the name only breaks ties between JSON files)."""
    head, tail = data[:HEAD], data[-16:]
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(ZIP_MAGIC):
        return _zip_kind(data)
    if head.startswith(b"GGUF"):
        return "gguf"
    if head[4:8] == b"TFL3":
        return "tflite"
    if any(head[offset : offset + 8] == HDF5_MAGIC for offset in (0, 512, 1024, 2048)):
        return "hdf5"
    if len(head) > 10 and head[8:10] == b'{"':
        (length,) = struct.unpack("<Q", head[:8])
        if 2 <= length <= len(data) - 8:
            return "safetensors"
    if head.startswith(b"\x08\x01\x12") and (b"serve" in head or b"tensorflow" in head):
        return "savedmodel"
    if _is_onnx(data):
        return "onnx"
    if head.startswith(TORCH_LEGACY_MAGIC):
        return "pytorch-legacy"
    if _looks_like_pickle(data, tail):
        return "pickle"
    inner = _decompressed_head(head)
    if inner is not None and _looks_like_pickle(inner[0], _decompressed_tail(data, inner[1])):
        return f"pickle+{inner[1]}"
    text = _text(head) if len(data) < 4 * 1024 * 1024 else None
    if text is not None:
        stripped = text.lstrip()
        if stripped.startswith("{") and ('"chat_template"' in text or '"tokenizer_class"' in text):
            return "tokenizer-config" if name.endswith(".json") else None
        if _is_chat_template(text):
            return "jinja"
    return None


def _is_chat_template(text: str) -> bool:
    """Jinja that renders chat messages: mostly template lines, or template tags in text that is no program."""
    if text.count("{%") < 2 or "messages" not in text or not ("role" in text or "bos_token" in text):
        return False
    lines = [line.lstrip() for line in text.splitlines() if line.strip()]
    tagged = sum(line.startswith(("{%", "{{")) for line in lines)
    return tagged * 5 >= len(lines) or not any(marker in text for marker in SOURCE_MARKERS)


def _decompressed_head(head: bytes) -> tuple[bytes, str] | None:
    """The first bytes of a gzip/zlib/xz/bz2/lz4/joblib-zlib stream, and the codec's name."""
    attempts: list[tuple[str, Any]] = []
    if head.startswith(b"\x1f\x8b"):
        attempts.append(("gzip", lambda: zlib.decompressobj(31).decompress(head, HEAD)))
    if head[:1] == b"\x78" and (head[0] * 256 + head[1]) % 31 == 0:
        attempts.append(("zlib", lambda: zlib.decompressobj().decompress(head, HEAD)))
    if head.startswith(b"ZF0x"):  # joblib < 0.10: 'ZF', a hex length, then zlib
        start = head.find(b"x", 4)
        attempts.append(("joblib-zlib", lambda: zlib.decompressobj().decompress(head[start:], HEAD)))
    if head.startswith(b"\xfd7zXZ\x00"):
        attempts.append(("xz", lambda: lzma.LZMADecompressor().decompress(head, HEAD)))
    if head.startswith(b"BZh"):
        attempts.append(("bz2", lambda: bz2.BZ2Decompressor().decompress(head, HEAD)))
    if head.startswith(b"\x04\x22\x4d\x18"):
        attempts.append(("lz4", lambda: _lz4_head(head)))
    for codec, run in attempts:
        with contextlib.suppress(Exception):
            out = run()
            if out:
                return out, codec
    return None


def _lz4_head(head: bytes) -> bytes:
    import lz4.frame

    decompressor = lz4.frame.LZ4FrameDecompressor()
    return bytes(decompressor.decompress(head, max_length=HEAD))


def _decompressed_tail(data: bytes, codec: str) -> bytes:
    """The last bytes of the whole decompressed stream (a pickle ends in STOP)."""
    with contextlib.suppress(Exception):
        if codec == "gzip":
            return gzip.decompress(data)[-16:]
        if codec == "zlib":
            return zlib.decompress(data)[-16:]
        if codec == "joblib-zlib":
            return zlib.decompress(data[data.find(b"x", 4) :])[-16:]
        if codec == "xz":
            return lzma.decompress(data)[-16:]
        if codec == "bz2":
            return bz2.decompress(data)[-16:]
        if codec == "lz4":
            import lz4.frame

            return bytes(lz4.frame.decompress(data))[-16:]
    return b""


# --- walking releases -----------------------------------------------------------------------------


def members(data: bytes, prefix: str, depth: int = 0) -> Iterator[tuple[str, bytes]]:
    """Every regular member of a zip or tar (plain or compressed), in archive order, nested ones too."""
    for name, body in _archive_entries(data):
        path = f"{prefix}{name}"
        yield path, body
        nested = body.startswith(ZIP_MAGIC) or _is_tar(body)
        if depth < MAX_DEPTH and nested and sniff(name, body) is None:
            yield from members(body, f"{path}!/", depth + 1)


def _archive_entries(data: bytes) -> Iterator[tuple[str, bytes]]:
    """The regular members of one zip (sorted by name) or tar (in stream order); nothing otherwise."""
    if data.startswith(ZIP_MAGIC):
        with (
            contextlib.suppress(zipfile.BadZipFile, ValueError, OSError, EOFError),
            zipfile.ZipFile(io.BytesIO(data)) as archive,
        ):
            for info in sorted(archive.infolist(), key=lambda item: item.filename):
                if not info.is_dir() and info.file_size <= MAX_MEMBER_BYTES:
                    yield info.filename, archive.read(info)
    elif _is_tar(data):
        with (
            contextlib.suppress(tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError),
            tarfile.open(fileobj=io.BytesIO(data), mode="r|*") as tar,
        ):
            for member in tar:
                handle = tar.extractfile(member) if member.isfile() and member.size <= MAX_MEMBER_BYTES else None
                if handle is not None:
                    yield member.name, handle.read()


def _is_tar(data: bytes) -> bool:
    """A tar, plain or gzip/bz2/xz-compressed (the ustar magic of its first header)."""
    if data[257:262] == b"ustar":
        return True
    if data.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ")):
        head = _decompressed_head(data[:HEAD])
        return head is not None and head[0][257:262] == b"ustar"
    return False


def _safe_relative(inner: str) -> Path:
    parts = [part for part in inner.replace("!/", "/").split("/") if part not in ("", ".", "..")]
    return Path(*parts)


def extract(package: Package, dist: Path, cache: Path) -> list[Kept]:
    """The model files in one release, copied under cache/extract/<release>/ (done once per release)."""
    root = cache / "extract" / package.key
    manifest = root / "manifest.json"
    if manifest.exists():
        saved = json.loads(manifest.read_text())
        if saved.get("extractor") == EXTRACTOR_VERSION and saved.get("dist") == dist.name:
            return [Kept(**entry) for entry in saved["files"]]
    kept: list[Kept] = []
    data = dist.read_bytes()
    pending_variables: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    for inner, body in members(data, ""):
        name = inner.rsplit("/", 1)[-1]
        if "/variables/variables." in f"/{inner}":
            pending_variables[inner.rsplit("/variables/", 1)[0]].append((inner, body))
        fmt = sniff(name, body)
        if fmt is None:
            continue
        disk = root / "files" / _safe_relative(inner)
        disk.parent.mkdir(parents=True, exist_ok=True)
        disk.write_bytes(body)
        kept.append(Kept(package.spec, inner, fmt, len(body), str(disk)))
    for entry in kept:  # a SavedModel's variables sit beside it, as TensorFlow reads them
        if entry.fmt == "savedmodel":
            for inner, body in pending_variables.get(entry.inner.rsplit("/", 1)[0], []):
                disk = root / "files" / _safe_relative(inner)
                disk.parent.mkdir(parents=True, exist_ok=True)
                disk.write_bytes(body)
    root.mkdir(parents=True, exist_ok=True)
    record = {"extractor": EXTRACTOR_VERSION, "dist": dist.name, "files": [vars(entry) for entry in kept]}
    manifest.write_text(json.dumps(record, indent=1) + "\n")
    return kept


# --- scanning -------------------------------------------------------------------------------------


def scan(kept: Sequence[Kept], command: Sequence[str], jobs: int, batch: int = 400) -> list[Verdict]:
    """Each file's verdict at the default gate, from `modelshield scan --format json` over batches."""
    verdicts: list[Verdict] = []
    by_disk = {entry.disk: entry for entry in kept}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    for start in range(0, len(kept), batch):
        chunk = kept[start : start + batch]
        with tempfile.TemporaryDirectory() as scratch:
            report_path = Path(scratch) / "report.json"
            argv = [*command, "scan", "--format", "json", "--no-progress", "--jobs", str(jobs), "-o", str(report_path)]
            result = subprocess.run(
                [*argv, *(entry.disk for entry in chunk)],
                check=False,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if not report_path.exists():
                raise SystemExit(f"modelshield wrote no report (exit {result.returncode}): {result.stderr[-2000:]!r}")
            report = json.loads(report_path.read_text())
        gate = SEVERITIES.index(report["policy"]["fail_on"])
        seen: set[str] = set()
        for record in report["files"]:
            entry = by_disk.get(record["path"])
            if entry is None or not record.get("is_model", True):  # not a model to modelshield
                continue
            seen.add(entry.disk)
            failing = [f for f in record["findings"] if SEVERITIES.index(f["severity"]) >= gate]
            failed = bool(failing) or record.get("error") is not None
            verdicts.append(
                Verdict(entry, failed, record["max_severity"], failing, record.get("error"), record.get("format"))
            )
        for error in report.get("errors", []):
            path = error.get("path") if isinstance(error, dict) else None
            if path in by_disk and path not in seen:
                seen.add(path)
                verdicts.append(Verdict(by_disk[path], True, None, [], json.dumps(error)))
        for entry in chunk:
            if entry.disk not in seen:
                verdicts.append(Verdict(entry, False, None, recognised=False))
    return verdicts


# --- reporting ------------------------------------------------------------------------------------


def table(title: str, column: str, groups: dict[str, list[Verdict]]) -> str:
    """A Markdown table per group: files, passed, failed, not recognised, and the failing rules with counts."""
    lines = [
        f"### {title}",
        "",
        f"| {column} | files | passed | failed | not a model to modelshield | failing rules |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    total: list[Verdict] = []
    for key in sorted(groups):
        total += groups[key]
        lines.append(_row(key, groups[key]))
    lines.append(_row("**all**", total))
    return "\n".join(lines) + "\n"


def _row(key: str, verdicts: Sequence[Verdict]) -> str:
    failed = [v for v in verdicts if v.failed]
    unseen = sum(not v.recognised for v in verdicts)
    rules: Counter[str] = Counter()
    for verdict in failed:
        rules.update({f["rule_id"] for f in verdict.failing} or {"scan error"})
    ranked = sorted(rules.items(), key=lambda item: (-item[1], item[0]))
    rule_text = ", ".join(f"{rule} ({count})" for rule, count in ranked)
    passed = len(verdicts) - len(failed) - unseen
    return f"| {key} | {len(verdicts)} | {passed} | {len(failed)} | {unseen} | {rule_text} |"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="download and extraction cache")
    parser.add_argument("--packages", type=Path, default=PACKAGES, help="pinned package list (TOML)")
    parser.add_argument("--offline", action="store_true", help="use the cache only; never touch the network")
    parser.add_argument("--only", default="", help="comma-separated names: survey these packages only")
    parser.add_argument("--modelshield", default=f"{shlex.quote(sys.executable)} -m modelshield", help="CLI command")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="modelshield --jobs")
    parser.add_argument("--json", type=Path, help="write every verdict with its failing findings here")
    parser.add_argument("--no-scan", action="store_true", help="fetch and extract only")
    args = parser.parse_args(argv)

    packages = load_packages(args.packages)
    if args.only:
        wanted = {canonicalize_name(name) for name in args.only.split(",")}
        packages = [p for p in packages if canonicalize_name(p.name) in wanted]
    kept: list[Kept] = []
    shipping: list[Package] = []
    for package in packages:
        try:
            dist = fetch(package, args.cache, args.offline)
        except (LookupError, OSError) as exc:
            print(f"skip {package.spec}: {exc}", file=sys.stderr)
            continue
        found = extract(package, dist, args.cache)
        print(f"{package.spec:45} {dist.name[:60]:60} {len(found):5} model files", file=sys.stderr)
        if found:
            shipping.append(package)
        kept += found
    print(f"{len(kept)} model files from {len(shipping)} of {len(packages)} releases", file=sys.stderr)
    if args.no_scan:
        return 0
    verdicts = scan(kept, shlex.split(args.modelshield), args.jobs)
    verdicts.sort(key=lambda v: (v.kept.package, v.kept.inner))
    by_format: dict[str, list[Verdict]] = defaultdict(list)
    by_package: dict[str, list[Verdict]] = defaultdict(list)
    for verdict in verdicts:
        by_format[verdict.kept.fmt].append(verdict)
        by_package[verdict.kept.package].append(verdict)
    print(table("By format", "format", by_format))
    print(table("By package", "package", by_package))
    if args.json:
        records = [
            {
                "package": v.kept.package,
                "path": v.kept.inner,
                "format": v.kept.fmt,
                "scanner_format": v.scanner_format,
                "size": v.kept.size,
                "disk": v.kept.disk,
                "failed": v.failed,
                "max_severity": v.max_severity,
                "error": v.error,
                "recognised": v.recognised,
                "failing": v.failing,
            }
            for v in verdicts
        ]
        args.json.write_text(json.dumps(records, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
