"""The `modelshield` command line: scan, deps, rules, explain, and the integrity commands hash, sign, verify.

stdout carries only the report (or the requested listing); logs, progress and errors go to stderr.
Exit codes: 0 nothing at or above the failing severity, 1 findings at or above it, 2 usage errors and
paths that do not exist or cannot be read, 3 an internal error (a bug: never read as "findings").
`verify` exits 1 when the model does not match its signature. A closed stdout (`| head`) ends the
command quietly, as SIGPIPE ends Unix tools.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn, TextIO

from modelshield import __version__, api
from modelshield.api import ScanInputError, scan
from modelshield.core.activity import Board, Watcher
from modelshield.core.files import Skipped
from modelshield.core.policy import Policy, PolicyError, discover_scan_policy, load_policy_file
from modelshield.core.report import FileResult
from modelshield.core.rules import CATALOGUE, Severity
from modelshield.deps.resolve import DownloadUnavailable
from modelshield.gateway.command import add_parser as add_serve_parser
from modelshield.gateway.command import run as run_serve
from modelshield.integrity.hashing import ManifestEntry, manifest, manifest_json, sha256sum_line
from modelshield.integrity.signing import (
    PasswordRequired,
    SigningInputError,
    VerificationError,
    sign_model,
    verify_model,
)
from modelshield.registry import ALLOWLISTS
from modelshield.reports import FORMATS, FormatUnavailable, one_line, render, require
from modelshield.reports.json_report import deps_dict, dumps
from modelshield.sources import RemoteInputError, RemoteUnavailable, is_remote

if TYPE_CHECKING:  # rich and threading are imported only for terminal output: they cost start-up time
    import threading

    from rich.progress import Progress, TaskID


EXIT_CLEAN, EXIT_FINDINGS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
#: Set (to anything but empty) to print the traceback of an internal error.
DEBUG_ENV = "MODELSHIELD_DEBUG"
#: The environment variable holding the password of an encrypted private key for `sign`.
PASSWORD_ENV = "MODELSHIELD_PRIVATE_KEY_PASSWORD"  # noqa: S105 - the variable's name, not a password
SEVERITIES = [s.label for s in sorted(Severity, reverse=True)]

_SCAN_EXAMPLES = """examples:
  modelshield scan models/                                  text report, exit 1 on medium and above
  modelshield scan -f sarif -o modelshield.sarif models/    for GitHub code scanning
  modelshield scan -f cyclonedx -o ml-bom.json models/      CycloneDX 1.6 ML-BOM
  modelshield scan -f html -o report.html models/           one self-contained page
  modelshield scan --fail-on high --ignore SCN004 models/   gate on high, silence one rule
  modelshield scan --select 'PKL*,TSC*' --exclude tests .   only pickle and TorchScript rules
  modelshield scan -q --min-severity medium models/         findings only, medium and above"""

_COMPLETION_EXAMPLES = """examples:
  source <(modelshield completion bash)                      in ~/.bashrc
  modelshield completion zsh > "${fpath[1]}/_modelshield"    zsh
  modelshield completion fish > ~/.config/fish/completions/modelshield.fish"""


class UsageError(Exception):
    """Printed as one line on stderr; exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _severity(text: str) -> Severity:
    try:
        return Severity.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _globs(text: str) -> list[str]:
    """`PKL001,TPL*`: options that take lists accept commas and repetition, as Ruff's do."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _extend(values: list[list[str]] | None) -> list[str]:
    return [item for chunk in values or [] for item in chunk]


def _output_option(command: argparse.ArgumentParser, what: str = "the report") -> None:
    command.add_argument("-o", "--output", metavar="FILE", help=f"write {what} to FILE instead of stdout")


def _selection_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--select",
        type=_globs,
        action="append",
        metavar="RULES",
        help="report only these rule ids or globs (comma-separated, e.g. PKL001,TPL*); others are listed as suppressed",
    )
    command.add_argument(
        "--ignore", type=_globs, action="append", metavar="RULES", help="suppress these rule ids or globs"
    )
    command.add_argument(
        "--exclude",
        type=_globs,
        action="append",
        metavar="GLOBS",
        help="skip files under the scanned folders matching these globs (a name like 'tests' or "
        "'*.onnx', or a path like 'data/raw'); paths given on the command line are always scanned",
    )


def _download_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--download",
        action="store_true",
        help="download Hub dependencies missing from the Hugging Face cache (the only network access; "
        "needs huggingface_hub)",
    )


def _remote_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--no-cache", action="store_true", help="remote models: scan every file again instead of using stored verdicts"
    )
    command.add_argument(
        "--max-fetch-mb",
        type=_positive_int,
        metavar="MB",
        help="remote models: stop reading a file after MB mebibytes (a fail-closed SCN005; default 512)",
    )


def _max_fetch(args: argparse.Namespace) -> int | None:
    return int(args.max_fetch_mb) * 1024 * 1024 if args.max_fetch_mb else None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="modelshield",
        description="Static security scanner for machine-learning model files. Finds code that would run "
        "when a model is loaded or used, without ever loading or executing it.",
        epilog="Exit codes: 0 no finding at or above the failing severity; 1 at least one; "
        f"2 usage error or unreadable input; 3 internal error (set {DEBUG_ENV}=1 for the traceback). "
        "NO_COLOR=1 or --no-color turns colours off.",
    )
    parser.add_argument("--version", action="version", version=f"modelshield {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    scan_cmd = commands.add_parser(
        "scan",
        help="scan model files and folders",
        description="Scan files and folders. Formats are identified from content, never from names; "
        "archives and compressed streams are walked in memory, to any depth within limits.",
        epilog="Policy: --policy FILE, else [tool.modelshield] in the nearest pyproject.toml above the PATHs. "
        "Version-control folders (.git, .hg, .svn) are skipped.\n\n" + _SCAN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scan_cmd.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="files or folders to scan, or remote models: hf://ORG/NAME[@REVISION][/PATH], Hub and HTTPS file "
        "URLs, s3://BUCKET/KEY-or-PREFIX, models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN/PATH",
    )
    scan_cmd.add_argument("-f", "--format", choices=FORMATS, default="text", help="report format (default: text)")
    _output_option(scan_cmd)
    scan_cmd.add_argument(
        "--fail-on",
        type=_severity,
        metavar="SEVERITY",
        help=f"exit 1 if a finding is at or above SEVERITY ({', '.join(SEVERITIES)}; default: medium, "
        "or the policy's fail-on)",
    )
    scan_cmd.add_argument("--policy", metavar="FILE", help="policy file (TOML, or a pyproject.toml)")
    scan_cmd.add_argument(
        "-j", "--jobs", type=_positive_int, metavar="N", help="files scanned in parallel (default: CPU cores)"
    )
    scan_cmd.add_argument(
        "-v", "--verbose", action="store_true", help="also list files that are not models, and every object scanned"
    )
    scan_cmd.add_argument(
        "-q", "--quiet", action="store_true", help="text report: only the findings, no summary (nor progress)"
    )
    scan_cmd.add_argument(
        "--exit-zero", action="store_true", help="exit 0 even when findings fail the scan (errors still exit 2)"
    )
    scan_cmd.add_argument(
        "--min-severity",
        type=_severity,
        metavar="SEVERITY",
        help="show only findings at or above SEVERITY in the text and html reports (display only: the exit code "
        "and the machine formats count every finding)",
    )
    _selection_options(scan_cmd)
    scan_cmd.add_argument("--no-color", action="store_true", help="plain text output even on a terminal")
    scan_cmd.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    scan_cmd.add_argument(
        "--public-key",
        metavar="KEY",
        help="verify each PATH's model signature with this PEM public key (default: the policy's public-key); "
        "failures are INT001/INT002 findings",
    )
    scan_cmd.add_argument(
        "--signature", metavar="SIG", help="signature of the one PATH (default: model.sig in a folder, PATH.sig)"
    )
    scan_cmd.add_argument(
        "--no-deps", action="store_true", help="do not resolve and scan the models and code the files depend on"
    )
    _download_option(scan_cmd)
    _remote_options(scan_cmd)

    deps_cmd = commands.add_parser(
        "deps",
        help="show the dependency tree of models, with each node's verdict",
        description="Scan models, follow the models and code they load (base models, remote code, "
        "components, models loaded by pickles) through local paths and the Hugging Face cache, and print "
        "the dependency tree with each node's verdict. Exit codes as for scan.",
    )
    deps_cmd.add_argument("paths", nargs="+", metavar="PATH", help="model files or folders")
    deps_cmd.add_argument("-f", "--format", choices=["text", "json"], default="text", help="tree format")
    _output_option(deps_cmd, "the tree")
    _selection_options(deps_cmd)
    deps_cmd.add_argument(
        "--fail-on", type=_severity, metavar="SEVERITY", help="exit 1 if a node's worst finding is at or above SEVERITY"
    )
    deps_cmd.add_argument("--policy", metavar="FILE", help="policy file (TOML, or a pyproject.toml)")
    deps_cmd.add_argument(
        "-j", "--jobs", type=_positive_int, metavar="N", help="files scanned in parallel (default: CPU cores)"
    )
    _download_option(deps_cmd)
    _remote_options(deps_cmd)

    cache_cmd = commands.add_parser(
        "cache",
        help="show or clear the verdict cache of remote scans",
        description="Remote scans keep each file's verdict by content digest, scanner version and policy, so "
        "that scanning an unchanged model again costs one listing request. Stored in "
        "$MODELSHIELD_CACHE_DIR, else $XDG_CACHE_HOME/modelshield, else ~/.cache/modelshield.",
    )
    cache_cmd.add_argument("action", choices=["show", "clear"], help="show: where and how many; clear: empty it")

    rules_cmd = commands.add_parser("rules", help="list every rule", description="List every rule.")
    rules_cmd.add_argument("-f", "--format", choices=["text", "json"], default="text", help="listing format")
    _output_option(rules_cmd, "the listing")

    explain_cmd = commands.add_parser(
        "explain", help="show a rule's threat page", description="Show a rule's threat page."
    )
    explain_cmd.add_argument("rule", metavar="RULE_ID", help="e.g. SCN001 (see 'modelshield rules')")
    _output_option(explain_cmd, "the page")

    hash_cmd = commands.add_parser(
        "hash",
        help="print a SHA-256 manifest of files and folders",
        description="Print the SHA-256 of every file; a folder's files are named relative to it, so the text "
        "format can be checked with 'sha256sum -c' from inside the folder.",
    )
    hash_cmd.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    hash_cmd.add_argument("-f", "--format", choices=["text", "json"], default="text", help="manifest format")
    _output_option(hash_cmd, "the manifest")

    sign_cmd = commands.add_parser(
        "sign",
        help="sign a model (OpenSSF model signing format)",
        description="Sign a model folder or file: the signature covers the SHA-256 of every file.",
    )
    sign_cmd.add_argument("path", metavar="PATH", help="model folder or file")
    sign_cmd.add_argument("--private-key", required=True, metavar="KEY", help="PEM elliptic-curve private key")
    sign_cmd.add_argument(
        "--private-key-password-file",
        metavar="FILE",
        help=f"password of an encrypted KEY, on the first line of FILE (else ${PASSWORD_ENV}, else a prompt "
        "on a terminal)",
    )
    sign_cmd.add_argument(
        "-o", "--output", metavar="SIG", help="signature file (default: model.sig in the folder, or PATH.sig)"
    )
    sign_cmd.add_argument("--signing-certificate", metavar="CERT", help="PEM certificate of the private key")
    sign_cmd.add_argument(
        "--certificate-chain", action="append", default=[], metavar="CERT", help="PEM certificates up to the root"
    )

    verify_cmd = commands.add_parser(
        "verify",
        help="verify a model against its signature",
        description="Verify a model folder or file against its OpenSSF model signature. Exit 0 when every "
        "file matches, 1 when a file was modified, removed or added or the key does not match.",
    )
    verify_cmd.add_argument("path", metavar="PATH", help="model folder or file")
    verify_cmd.add_argument("--public-key", metavar="KEY", help="PEM public key of the signer")
    verify_cmd.add_argument(
        "--certificate-chain", action="append", default=[], metavar="CERT", help="trusted PEM certificates"
    )
    verify_cmd.add_argument(
        "--signature", metavar="SIG", help="signature file (default: model.sig in the folder, or PATH.sig)"
    )
    convert_cmd = commands.add_parser(
        "convert",
        help="convert a PyTorch, NumPy or joblib file to safetensors without running it",
        description="Convert to safetensors, with no torch and no unpickling: a PyTorch checkpoint (zip or legacy; "
        "a state dict or a training checkpoint's state-dict key; a sharded checkpoint's folder or "
        "pytorch_model.bin.index.json with --output-dir), a NumPy .npy/.npz or a joblib dump of numeric arrays. "
        "The file is scanned first and refused on any "
        "finding at or above the failing severity, and only the calls a tensor rebuild needs are honoured. "
        "Exit 0 converted, 1 refused (nothing written), 2 unreadable input.",
    )
    convert_cmd.add_argument("input", metavar="IN", help="checkpoint (.pt, .bin, .pth)")
    target = convert_cmd.add_mutually_exclusive_group(required=True)
    target.add_argument("-o", "--output", metavar="OUT", help="safetensors file to write")
    target.add_argument(
        "--output-dir", metavar="DIR", help="for a sharded checkpoint: folder for the shards and their index"
    )
    convert_cmd.add_argument(
        "--fail-on", type=_severity, metavar="SEVERITY", help="refuse on findings at or above SEVERITY (default medium)"
    )
    convert_cmd.add_argument("--policy", metavar="FILE", help="policy file (TOML, or a pyproject.toml)")

    add_serve_parser(commands)

    completion_cmd = commands.add_parser(
        "completion",
        help="print a shell completion script",
        description="Print a completion script for bash, zsh or fish.",
        epilog=_COMPLETION_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    completion_cmd.add_argument("shell", choices=["bash", "zsh", "fish"], help="the shell to complete in")
    return parser


class _ProgressBar(Watcher):
    """The display on stderr, shown once a scan has taken more than a moment, even before the first
    file is done: files done, and which file is being read and how far."""

    DELAY = 0.75

    def __init__(self) -> None:
        self.done = 0
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._timer: threading.Timer | None = None
        self._lock: threading.Lock | None = None
        self._closed = False

    def watch(self, board: Board) -> None:
        if self._timer is not None:
            return
        import threading  # noqa: PLC0415 - only on a terminal

        self._lock = threading.Lock()
        self._timer = threading.Timer(self.DELAY, self._show, (board,))
        self._timer.daemon = True
        self._timer.start()

    def _show(self, board: Board) -> None:
        from modelshield.reports.live import display  # noqa: PLC0415 - imports rich

        assert self._lock is not None
        with self._lock:
            if not self._closed:
                self._progress = display(board)
                self._task = self._progress.add_task("scan", total=len(board.files), completed=self.done)

    def __call__(self, result: FileResult, done: int, total: int) -> None:
        self.done = done
        if self._lock is None:
            return
        with self._lock:
            if self._progress is not None and self._task is not None:
                self._progress.update(self._task, completed=done)

    def close(self) -> None:
        if self._timer is None or self._lock is None:
            return
        self._timer.cancel()
        with self._lock:
            self._closed = True
            if self._progress is not None:
                self._progress.stop()


def _policy(args: argparse.Namespace) -> Policy:
    if args.policy:
        if not os.path.isfile(args.policy):
            raise UsageError(f"policy file not found: {args.policy}")
        policy = load_policy_file(args.policy, ALLOWLISTS)
    else:
        local = [p for p in args.paths if not is_remote(p)] or [os.curdir]  # remote models: the current folder's
        policy = discover_scan_policy(local, ALLOWLISTS) or Policy()
    return policy.with_fail_on(args.fail_on).with_selection(
        _extend(args.select), _extend(args.ignore), _extend(args.exclude)
    )


def _error(message: str) -> None:
    """One line on stderr; undecodable bytes and control characters of names shown as \\xNN, as in reports."""
    print(f"modelshield: error: {one_line(message)}", file=sys.stderr)


def _color(stream: TextIO, disabled: bool = False) -> bool:
    """Colour only on a terminal, and never with --no-color or NO_COLOR set to anything (no-color.org)."""
    return stream.isatty() and not disabled and not os.environ.get("NO_COLOR")


def _note(args: argparse.Namespace, message: str) -> None:
    """A progress note on stderr, shown with --verbose (stdout carries only the report)."""
    if args.verbose:
        print(f"modelshield: {message}", file=sys.stderr)


def _write(args: argparse.Namespace, text: str) -> None:
    """What a command prints: to `-o FILE` when given (a note on stderr says so), else to stdout."""
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as out:
                out.write(text)
        except OSError as exc:
            raise UsageError(f"cannot write report to {args.output}: {exc.strerror or exc}") from None
        if getattr(args, "verbose", False):
            print(f"modelshield: written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def _run_scan(args: argparse.Namespace) -> int:
    try:
        require(args.format)
    except FormatUnavailable as exc:
        raise UsageError(str(exc)) from None
    policy = _policy(args)
    if policy.source:
        _note(args, f"policy: {policy.source}")
    interactive = sys.stderr.isatty() and not os.environ.get("CI") and not args.no_progress and not args.quiet
    bar = _ProgressBar() if interactive else None  # no shared memory nor threads otherwise
    try:
        report = scan(
            args.paths,
            policy,
            jobs=args.jobs,
            progress=bar,
            public_key=args.public_key,
            signature=args.signature,
            follow_dependencies=not args.no_deps,
            download=args.download,
            cache=not args.no_cache,
            max_fetch_bytes=_max_fetch(args),
        )
    except (ScanInputError, SigningInputError, DownloadUnavailable, RemoteInputError, RemoteUnavailable) as exc:
        raise UsageError(str(exc)) from None
    finally:
        if bar is not None:
            bar.close()
    for _path, message in report.errors:
        _error(message)
    color = args.format == "text" and args.output is None and _color(sys.stdout, args.no_color)
    floor = args.min_severity or Severity.INFO
    _write(args, render(args.format, report, args.verbose, color, floor=floor, quiet=args.quiet))
    if args.exit_zero and report.exit_code == EXIT_FINDINGS:
        return EXIT_CLEAN
    return report.exit_code


def _run_deps(args: argparse.Namespace) -> int:
    try:
        report = scan(
            args.paths,
            _policy(args),
            jobs=args.jobs,
            download=args.download,
            cache=not args.no_cache,
            max_fetch_bytes=_max_fetch(args),
        )
    except (ScanInputError, DownloadUnavailable, RemoteInputError, RemoteUnavailable) as exc:
        raise UsageError(str(exc)) from None
    for _path, message in report.errors:
        _error(message)
    if args.format == "json":
        _write(args, dumps(deps_dict(report)))
    else:
        from modelshield.reports.text import render_dependencies  # noqa: PLC0415 - imports rich

        _write(args, render_dependencies(report, args.output is None and _color(sys.stdout)))
    return report.exit_code


def _run_cache(args: argparse.Namespace) -> int:
    from modelshield.sources.cache import VerdictCache  # noqa: PLC0415 - only for this command

    cache = VerdictCache()
    if args.action == "clear":
        print(f"removed {cache.clear()} verdict(s) from {cache.path}")
        return EXIT_CLEAN
    stats = cache.stats()
    print(f"{stats['path']}: {stats['entries']} verdict(s), {stats['bytes']} bytes")
    return EXIT_CLEAN


def _run_rules(args: argparse.Namespace) -> int:
    if args.format == "json":
        rows = [
            {"id": r.id, "title": r.title, "severity": r.severity.label, "category": r.category.value}
            for r in CATALOGUE
        ]
        _write(args, json.dumps(rows, indent=2) + "\n")
        return EXIT_CLEAN
    width = max(len(r.id) for r in CATALOGUE)
    lines = (f"{r.id:<{width}}  {r.severity.label:<8}  {r.category.value:<24}  {r.title}\n" for r in CATALOGUE)
    _write(args, "".join(lines))
    return EXIT_CLEAN


def _run_explain(args: argparse.Namespace) -> int:
    rule = CATALOGUE.get(args.rule)
    if rule is None:
        raise UsageError(f"unknown rule {args.rule!r} (see 'modelshield rules')")
    if args.output is None and sys.stdout.isatty():
        from rich.console import Console  # noqa: PLC0415 - only on a terminal
        from rich.markdown import Markdown  # noqa: PLC0415

        Console(no_color=not _color(sys.stdout)).print(Markdown(rule.page()))
    else:
        _write(args, rule.page())
    return EXIT_CLEAN


def _run_hash(args: argparse.Namespace) -> int:
    """The manifest of every file that could be read; each path that could not is one line on stderr
    and makes the exit code 2, so that a manifest never loses a file in silence."""
    for path in args.paths:
        if not os.path.lexists(path):
            raise UsageError(f"no such file or directory: {path}")
    entries: list[ManifestEntry] = []
    failed = False
    streamed = args.format == "text" and args.output is None  # lines appear as files are hashed
    for item in manifest(args.paths):
        if isinstance(item, Skipped):
            failed = True
            print(f"modelshield: error: {one_line(item.reason)}", file=sys.stderr)
        elif streamed:
            print(sha256sum_line(item), flush=True)
        else:
            entries.append(item)
    if args.format == "json":
        _write(args, dumps(manifest_json(entries)))
    elif not streamed:
        _write(args, "".join(sha256sum_line(e) + "\n" for e in entries))
    return EXIT_USAGE if failed else EXIT_CLEAN


def _key_password(args: argparse.Namespace) -> bytes | None:
    """The private key's password from --private-key-password-file or the environment, never from argv
    (visible in `ps`); None when neither gives one."""
    if args.private_key_password_file:
        try:
            with open(args.private_key_password_file, "rb") as handle:
                lines = handle.read().splitlines()
        except OSError as exc:
            problem = exc.strerror or exc
            raise UsageError(f"cannot read password file {args.private_key_password_file}: {problem}") from None
        return lines[0] if lines else b""
    value = os.environ.get(PASSWORD_ENV)
    return os.fsencode(value) if value else None  # an empty variable (as CI leaves unset secrets) is none


def _run_sign(args: argparse.Namespace) -> int:
    def sign(password: bytes | None) -> str:
        return sign_model(
            args.path,
            args.private_key,
            args.output,
            signing_certificate=args.signing_certificate,
            certificate_chain=args.certificate_chain,
            password=password,
        )

    try:
        signature = sign(_key_password(args))
    except PasswordRequired as exc:
        if not sys.stdin.isatty():  # never wait for a prompt nobody sees (CI, pipes)
            raise UsageError(f"{exc}: give it with --private-key-password-file FILE or ${PASSWORD_ENV}") from None
        import getpass  # noqa: PLC0415 - only to prompt

        signature = sign(getpass.getpass(f"password for {args.private_key}: ").encode())
    print(f"signed {args.path}: {signature}")
    return EXIT_CLEAN


def _run_verify(args: argparse.Namespace) -> int:
    try:
        signature = verify_model(
            args.path, args.signature, public_key=args.public_key, certificate_chain=args.certificate_chain
        )
    except VerificationError as exc:
        print(f"modelshield: verification failed: {exc}", file=sys.stderr)
        return EXIT_FINDINGS
    print(f"verified {args.path}: every file matches {signature}")
    return EXIT_CLEAN


def _run_convert(args: argparse.Namespace) -> int:
    from modelshield.convert import ConversionInputError, ConversionRefused, convert, convert_sharded  # noqa: PLC0415

    if args.policy:
        policy = load_policy_file(args.policy, ALLOWLISTS).with_fail_on(args.fail_on)
    else:
        policy = (discover_scan_policy([args.input], ALLOWLISTS) or Policy()).with_fail_on(args.fail_on)
    try:
        if args.output_dir:
            results = convert_sharded(args.input, args.output_dir, policy)
        else:
            results = [convert(args.input, args.output, policy)]
    except ConversionInputError as exc:
        raise UsageError(str(exc)) from None
    except ConversionRefused as exc:
        print(f"modelshield: conversion refused, nothing written: {one_line(str(exc))}", file=sys.stderr)
        for finding in exc.findings:
            print(
                f"  {finding.level.label.upper()} {finding.rule_id} {one_line(str(finding.location))}: "
                f"{one_line(finding.evidence)} (modelshield explain {finding.rule_id})",
                file=sys.stderr,
            )
        return EXIT_FINDINGS
    for result in results:
        print(f"converted -> {result.output}: {len(result.tensors)} tensors, {result.bytes_written} bytes")
        if result.skipped:
            print(f"left out (not tensors of the state dict): {', '.join(result.skipped[:20])}", file=sys.stderr)
    return EXIT_CLEAN


def entry() -> int:
    """The console script and `python -m modelshield`: `main` in a process that ends when it returns.

    What was imported lives until exit, so it is moved out of the garbage collector's sight: otherwise
    collections and interpreter shutdown walk it again for nothing (a quarter of a small scan's time).
    """
    gc.freeze()
    # The scanner never calls BLAS, but numpy (which h5py and onnx import) starts OpenBLAS's thread pool,
    # whose threads spin at start-up: in each `--jobs` worker that cost more CPU than numpy's import itself.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    api.main_is_guarded = True  # `python -m modelshield` and the console script: workers skip their main
    try:
        code = main()
        sys.stdout.flush()  # inside the try: a closed pipe often shows only at this last flush
    except BrokenPipeError:
        return _stdout_closed()
    return code


#: What a shell reports for a tool ended by SIGPIPE, where there is no such signal (Windows).
EXIT_SIGPIPE = 128 + 13


def _stdout_closed() -> int:
    """The reader of stdout went away (`rules | head`): end quietly, as SIGPIPE ends Unix tools.

    Python ignores SIGPIPE so that writes raise; the default action is restored only now, so that a
    broken socket during a scan stays an error. stdout goes to /dev/null first so that the flush at
    exit cannot raise again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGPIPE)
    return EXIT_SIGPIPE


def _internal_error(exc: Exception) -> int:
    """A bug: exit 3 (never 1, which CI reads as findings), one line, the traceback on request."""
    if os.environ.get(DEBUG_ENV):
        traceback.print_exception(exc, file=sys.stderr)
    detail = " ".join(f"{type(exc).__name__}: {exc}".split())
    hint = "" if os.environ.get(DEBUG_ENV) else f"; {DEBUG_ENV}=1 shows the traceback"
    _error(f"internal error ({detail}); please report it{hint}")
    return EXIT_INTERNAL


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "scan":
            return _run_scan(args)
        if args.command == "deps":
            return _run_deps(args)
        if args.command == "rules":
            return _run_rules(args)
        if args.command == "cache":
            return _run_cache(args)
        if args.command == "explain":
            return _run_explain(args)
        if args.command == "hash":
            return _run_hash(args)
        if args.command == "sign":
            return _run_sign(args)
        if args.command == "verify":
            return _run_verify(args)
        if args.command == "serve":
            return run_serve(args)
        if args.command == "convert":
            return _run_convert(args)
        if args.command == "completion":
            from modelshield.completion import SHELLS  # noqa: PLC0415 - only for this command

            sys.stdout.write(SHELLS[args.shell](parser))
            return EXIT_CLEAN
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    except (UsageError, PolicyError, SigningInputError) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("modelshield: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # handled by `entry`, which owns the process
        raise
    except Exception as exc:
        return _internal_error(exc)


if __name__ == "__main__":
    sys.exit(main())
