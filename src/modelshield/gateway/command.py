"""`modelshield serve`: the gateway's command line (argparse only here; the server imports on use)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

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
        "--max-revision-bytes", type=int, default=200 * 2**30, metavar="N", help="largest revision fetched"
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


def _prepare_db(url: str) -> None:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        folder = os.path.dirname(url[len("sqlite:///") :])
        if folder:
            os.makedirs(folder, exist_ok=True)


def run(args: argparse.Namespace) -> int:
    """Start the gateway (or add a token); exits 2 when the gateway extra is missing."""
    try:
        import uvicorn  # noqa: PLC0415 - the `gateway` extra, only for `serve`

        from modelshield.gateway.app import Config, JsonFormatter, create_app, policy_digest  # noqa: PLC0415
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
        admin_teams=frozenset(args.admin_team),
        gateway_policy=gateway_policy,
        upstream_token=os.environ.get("HF_TOKEN") or None,
        max_revision_bytes=args.max_revision_bytes,
    )
    if args.upstream_host:
        config.upstream_hosts = tuple(args.upstream_host)
    app = create_app(config)
    # Keep-alive longer than clients' pools idle between files (uvicorn's 5 s closes connections that a
    # client is about to reuse, which it sees as a dropped request); 75 s as nginx does.
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False, timeout_keep_alive=75)
    return 0
