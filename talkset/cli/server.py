"""``talkset server start|stop|status`` and ``talkset deploy``: a local Prefect server, the
process work pool and talkset's deployments (:mod:`talkset.flows.server`)."""

from __future__ import annotations

import argparse
import json
import sys

from talkset.flows.server import (
    DEFAULT_POOL,
    ServerError,
    deploy,
    server_status,
    start_server,
    start_worker,
    stop_server,
)


def _cmd_server(args: argparse.Namespace) -> int:
    if args.action == "start":
        try:
            info = start_server(args.state_dir, host=args.host, port=args.port, ui=args.ui, timeout=args.timeout)
        except ServerError as exc:
            print(f"talkset server: {exc}", file=sys.stderr)
            return 1
        print(f"prefect server running (pid {info.pid}): PREFECT_API_URL={info.api_url}")
        print(f"  export PREFECT_API_URL={info.api_url}")
        return 0
    if args.action == "stop":
        stopped = stop_server(args.state_dir)
        print("prefect server stopped" if stopped else "no prefect server recorded for this state directory")
        return 0
    st = server_status(args.state_dir)
    print(json.dumps(st, indent=2))
    return 0 if st["healthy"] else 1


def _cmd_deploy(args: argparse.Namespace) -> int:
    try:
        names = deploy(args.state_dir, api_url=args.api_url, pool=args.pool, names=args.name, prefect_file=args.prefect_file)
        print("deployments: " + ", ".join(names))
        if args.worker:
            w = start_worker(args.state_dir, api_url=args.api_url, pool=args.pool)
            print(f"process worker started (pid {w.pid}) on pool {args.pool}; stop it with `talkset server stop`")
    except ServerError as exc:
        print(f"talkset deploy: {exc}", file=sys.stderr)
        return 1
    return 0


def register(sub) -> None:
    """Add ``server`` and ``deploy`` to the ``talkset`` CLI's sub-parsers."""
    s = sub.add_parser("server", help="run a local Prefect server (127.0.0.1, SQLite)")
    s.add_argument("action", choices=["start", "stop", "status"])
    s.add_argument("--state-dir", default=None, help="PREFECT_HOME of the server (default ~/.talkset/prefect)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=4200, help="0: a free port")
    s.add_argument("--ui", action=argparse.BooleanOptionalAction, default=True, help="serve the Prefect UI")
    s.add_argument("--timeout", type=float, default=120.0, help="seconds to wait until healthy")
    s.set_defaults(func=_cmd_server)

    d = sub.add_parser("deploy", help="create the process work pool and the deployments of prefect.yaml")
    d.add_argument("--state-dir", default=None)
    d.add_argument("--api-url", default=None, help="Prefect API (default: the server of --state-dir, else $PREFECT_API_URL)")
    d.add_argument("--pool", default=DEFAULT_POOL)
    d.add_argument("--name", action="append", help="deploy only this deployment (repeatable)")
    d.add_argument("--prefect-file", default=None, help="default: prefect.yaml of the repository")
    d.add_argument("--worker", action="store_true", help="also start a process worker in the background")
    d.set_defaults(func=_cmd_deploy)
