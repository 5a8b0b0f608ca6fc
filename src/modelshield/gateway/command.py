"""`modelshield serve`: the gateway's command line (argparse only here; the server imports on use)."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelshield.gateway.app import Config

DEFAULT_DB = "sqlite:///modelshield-gateway/gateway.db"
DEFAULT_STORE = "modelshield-gateway/store"


def add_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the gateway: a Hub proxy that scans before it serves",
        description="Serve the Hub API huggingface_hub uses (HF_ENDPOINT=http://HOST:PORT), fetching each "
        "revision from UPSTREAM, scanning it whole and serving only what the policy allows. Clients send a "
        "gateway token as their HF_TOKEN; the upstream token is read from the gateway's own HF_TOKEN and "
        "never leaves it. With --add-token TEAM, print a new client token for TEAM and exit.",
    )
    serve.add_argument("--upstream", default="https://huggingface.co", metavar="URL", help="the Hub to proxy")
    serve.add_argument("--db", default=DEFAULT_DB, metavar="URL", help=f"SQLAlchemy URL (default {DEFAULT_DB})")
    serve.add_argument("--store", default=DEFAULT_STORE, metavar="DIR", help="content-addressed file store")
    serve.add_argument("--policy", metavar="FILE", help="policy file (TOML), as for scan --policy")
    serve.add_argument(
        "--gateway-policy",
        metavar="FILE",
        help="waivers with expiry, trusted repositories, unscannable files, per team (TOML; see the README)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8780, help="port to listen on (default 8780)")
    serve.add_argument(
        "--team-policy",
        action="append",
        default=[],
        metavar="TEAM=FILE",
        help="judge TEAM's requests by its own policy file (repeatable; others use --policy)",
    )
    serve.add_argument(
        "--admin-team",
        action="append",
        default=[],
        metavar="TEAM",
        help="TEAM's tokens open the security page, GET /ui (repeatable; by default nobody's)",
    )
    serve.add_argument("--anonymous", action="store_true", help="serve clients without a token")
    serve.add_argument(
        "--public-url",
        metavar="URL",
        help="the gateway's address as developers reach it (https://models.internal), for the threat-page links "
        "in refusals (default: the scheme and host each request came to)",
    )
    serve.add_argument(
        "--max-revision-bytes", type=int, default=200 * 2**30, metavar="N", help="largest revision fetched"
    )
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        metavar="N",
        help="gateway processes on the one listening socket, sharing the database and store (default 1)",
    )
    serve.add_argument(
        "--lease-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="a process fetching or scanning a revision that is silent this long is presumed dead, and "
        "another process scans the revision again (default 30)",
    )
    serve.add_argument("--add-token", metavar="TEAM", help="print a new client token for TEAM and exit")
    serve.add_argument(
        "--upstream-host",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="a host the upstream's redirects may lead to besides its own origin (repeatable; replaces the "
        "default list, the Hub's CDN and storage hosts: cdn-lfs*.hf.co, cas-bridge.xethub.hf.co and others)",
    )


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _prepare_db(url: str) -> None:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        folder = os.path.dirname(url[len("sqlite:///") :])
        if folder:
            os.makedirs(folder, exist_ok=True)


def run(args: argparse.Namespace) -> int:
    """Start the gateway (or add a token); exits 2 when the gateway extra is missing."""
    try:
        import uvicorn  # noqa: F401, PLC0415 - the `gateway` extra, only for `serve` (used by the workers)

        from modelshield.gateway.app import Config, JsonFormatter, policy_digest  # noqa: PLC0415
        from modelshield.gateway.db import Database  # noqa: PLC0415
    except ImportError as exc:
        print(
            f"modelshield: serve needs the gateway extra ({exc.name}): pip install 'modelshield[gateway]'",
            file=sys.stderr,
        )
        return 2
    _prepare_db(args.db)
    if args.add_token:
        print(Database(args.db).add_token(args.add_token))
        return 0
    from modelshield import Policy, load_policy  # noqa: PLC0415
    from modelshield.gateway.policy import GatewayPolicyError, load_gateway_policy  # noqa: PLC0415

    try:
        gateway_policy = load_gateway_policy(args.gateway_policy)
    except (OSError, GatewayPolicyError) as exc:
        print(f"modelshield: --gateway-policy: {exc}", file=sys.stderr)
        return 2

    import logging  # noqa: PLC0415 - only `serve` logs; every other command parses this module

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("modelshield.gateway", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    os.makedirs(args.store, exist_ok=True)
    # Dependencies of a scanned model resolve offline from the store, laid out as a Hub cache.
    os.environ["HF_HUB_CACHE"] = os.path.join(os.path.abspath(args.store), "hub")
    teams = {}
    for entry in args.team_policy:
        team, sep, path = entry.partition("=")
        if not (team and sep and path):
            print(f"modelshield: --team-policy wants TEAM=FILE, not {entry!r}", file=sys.stderr)
            return 2
        teams[team] = (load_policy(path), policy_digest(path))
    config = Config(
        teams=teams,
        upstream=args.upstream,
        db=args.db,
        store=args.store,
        policy=load_policy(args.policy) if args.policy else Policy(),
        policy_digest=policy_digest(args.policy),
        anonymous=args.anonymous,
        public_url=args.public_url.rstrip("/") if args.public_url else None,
        admin_teams=frozenset(args.admin_team),
        gateway_policy=gateway_policy,
        upstream_token=os.environ.get("HF_TOKEN") or None,
        max_revision_bytes=args.max_revision_bytes,
        lease_timeout=args.lease_timeout,
    )
    if args.upstream_host:
        config.upstream_hosts = tuple(args.upstream_host)
    Database(args.db).engine.dispose()  # migrated once here, before any worker starts
    try:
        listening = _listen(args.host, args.port, args.workers)
    except OSError as exc:
        print(f"modelshield: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    if args.workers == 1:
        _worker(config, listening[0])
        return 0
    return _supervise(config, listening)


def _listen(host: str, port: int, workers: int) -> list[socket.socket]:
    """The listening sockets, bound here before any worker exists: one per worker on the same port with
    SO_REUSEPORT where the system has it (the kernel spreads new connections over the workers), else one
    socket they all accept from (an idle worker then accepts a whole burst of connections by itself)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    shared = workers == 1 or not hasattr(socket, "SO_REUSEPORT")
    sockets: list[socket.socket] = []
    try:
        for _ in range(1 if shared else workers):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if not shared:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]  # the port the first one got, for the others
            sock.listen(2048)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets * workers if shared else sockets


def _worker(config: Config, sock: socket.socket) -> None:
    """One gateway process: its own application (own caches, own connections) on its listening socket."""
    import uvicorn  # noqa: PLC0415

    from modelshield.gateway.app import create_app  # noqa: PLC0415

    # Keep-alive longer than clients' pools idle between files (uvicorn's 5 s closes connections that a
    # client is about to reuse, which it sees as a dropped request); 75 s as nginx does.
    options: dict[str, Any] = {}
    try:
        from modelshield.gateway.http import BoundedHead  # noqa: PLC0415 - needs httptools

        options["http"] = BoundedHead
    except ImportError:  # h11, which bounds the request head itself (16 KiB)
        pass
    server = uvicorn.Config(create_app(config), log_config=None, access_log=False, timeout_keep_alive=75, **options)
    uvicorn.Server(server).run(sockets=[sock])


def _child(config: Config, sockets: list[socket.socket], index: int) -> None:
    import signal  # noqa: PLC0415

    for other in set(sockets) - {sockets[index]}:  # forked with them all: a dead worker's must close with it
        other.close()
    # not the supervisor's handlers (they signal the workers): uvicorn's own, then the default
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _worker(config, sockets[index])


def _supervise(config: Config, sockets: list[socket.socket]) -> int:
    """Fork the workers and wait for them. SIGTERM or SIGINT is passed on to every worker; a worker that
    dies on its own is logged and not replaced: the others keep serving, and the gateway exits 3 in the
    end (0 when every worker ended because it was asked to)."""
    import logging  # noqa: PLC0415
    import multiprocessing  # noqa: PLC0415
    import multiprocessing.connection  # noqa: PLC0415
    import signal  # noqa: PLC0415

    log = logging.getLogger("modelshield.gateway")
    # fork: the workers inherit the socket and the loaded configuration; the app is made in each of them
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_child, args=(config, sockets, i), daemon=False) for i in range(len(sockets))]
    stopping = False

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for process in processes:
        process.start()
    if stopping:  # asked to stop while starting: the workers started since are told too
        stop(signal.SIGTERM, None)
    for sock in set(sockets):  # the workers hold them now: a worker that dies takes its socket with it
        sock.close()
    log.info("workers", extra={"fields": {"pids": [p.pid for p in processes]}})
    running = {process.sentinel: process for process in processes}
    died = False
    while running:
        for sentinel in multiprocessing.connection.wait(list(running)):
            process = running.pop(sentinel)  # type: ignore[arg-type]
            process.join()
            if not stopping:
                died = True
                fields = {"pid": process.pid, "exitcode": process.exitcode, "running": len(running)}
                log.error("worker died", extra={"fields": fields})
    return 3 if died else 0
