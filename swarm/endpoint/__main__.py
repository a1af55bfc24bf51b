"""``python -m swarm.endpoint serve [--port P] [--workers N] ...`` (also ``swarm endpoint ...``)."""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import sys

from swarm.endpoint.state import Settings

#: set to 1, the default of --relax-policy-limits
RELAX_ENV = "SWARM_ENDPOINT_RELAX_LIMITS"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swarm endpoint", description="a local RunPod endpoint for development and tests")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="serve RunPod's API on loopback and optionally start workers")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    p.add_argument("--endpoint-id", default=os.environ.get("RUNPOD_ENDPOINT_ID") or "local",
                   help="endpoint id in the URLs, /v2/<id>/run (default: $RUNPOD_ENDPOINT_ID, else local)")
    p.add_argument("--api-key", help="key clients and workers must send (default: $SWARM_ENDPOINT_API_KEY, else a new random one, printed)")
    p.add_argument("--workers", type=int, default=0, help="start N worker processes running --worker-command")
    p.add_argument("--worker-command", default=f"{shlex.quote(sys.executable)} -u handler.py", help="what each worker runs (from the project root)")
    p.add_argument("--execution-timeout-s", type=float, default=600.0, help="default execution timeout (policy.executionTimeout overrides it per job)")
    p.add_argument("--async-retention-s", type=float, default=1800.0, help="how long /run results are kept")
    p.add_argument("--sync-retention-s", type=float, default=60.0, help="how long /runsync results are kept")
    p.add_argument("--worker-lost-s", type=float, default=10.0, help="a worker silent this long loses its running jobs (FAILED)")
    p.add_argument("--relax-policy-limits", action="store_true", default=os.environ.get(RELAX_ENV) == "1",
                   help="take a request's policy.executionTimeout and policy.ttl from 1 ms, below RunPod's minimums"
                        f" (5000 and 10000 ms), for tests that watch a job time out (default: ${RELAX_ENV}=1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    from core.errors import ConfigError
    from core.redact import install_log_redaction
    from swarm.logs import configure_logging

    try:
        configure_logging(os.environ.get("SWARM_LOG_LEVEL", "INFO"), json=False)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    install_log_redaction()
    if args.workers < 0:
        print("error: --workers must be 0 or more", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:  # bind() said "OverflowError: ... port must be 0-65535" in a traceback
        print(f"error: --port {args.port}: a port is 0 to 65535 (0: any free one)", file=sys.stderr)
        return 2
    from swarm.endpoint.server import serve

    settings = Settings(
        execution_timeout_s=args.execution_timeout_s,
        async_retention_s=args.async_retention_s,
        sync_retention_s=args.sync_retention_s,
        worker_lost_s=args.worker_lost_s,
        policy_minimums=not args.relax_policy_limits,
    )
    try:
        serve(
            args.host,
            args.port,
            args.endpoint_id,
            args.api_key or os.environ.get("SWARM_ENDPOINT_API_KEY"),
            args.workers,
            worker_command=shlex.split(args.worker_command),
            settings=settings,
        )
    except OSError as exc:  # the port taken, or the host not this machine's: a traceback before
        if exc.errno == errno.EADDRINUSE:
            print(f"error: --port {args.port} is used by another program on {args.host}; stop it or give another"
                  " --port (0: any free one)", file=sys.stderr)
            return 2
        if exc.errno == errno.EADDRNOTAVAIL:
            print(f"error: --host {args.host} is no address of this machine", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
