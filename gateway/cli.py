"""The ``tradewire`` command: serve, devnet, keys."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import uvloop

from tradewire.core.auth.cli import add_keys_subcommands, run_keys_command
from tradewire.core.config import ConfigError, load_settings
from tradewire.core.logs import configure_logging


def _serve(args: argparse.Namespace) -> int:
    from tradewire.gateway.server import serve

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"tradewire: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.logging.level)
    if args.worker is not None:  # one of the supervisor's workers (gateway/workers.py)
        from tradewire.gateway.workers import worker_settings

        settings = worker_settings(settings, args.worker)
    elif settings.server.workers > 1:
        from tradewire.gateway.workers import supervise

        return uvloop.run(supervise(settings, args.config))
    from tradewire.gateway.assembly import StartupError

    try:
        uvloop.run(serve(settings, worker=args.worker))
    except StartupError as exc:
        print(f"tradewire: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["devnet"]:  # the devnet parses its own options
        from tradewire.devnet.server import main as devnet_main

        return devnet_main(argv[1:])
    parser = argparse.ArgumentParser(prog="tradewire", description="Solana trade-execution gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve gRPC, Connect, gRPC-Web and HTTP/JSON")
    serve.add_argument("--config", help="TOML file (default: $TRADEWIRE_CONFIG, else embedded defaults)")
    serve.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # set by the workers' supervisor
    serve.set_defaults(handler=_serve)
    commands.add_parser("devnet", help="run the local Solana devnet (RPC, Jupiter, Jito); see devnet --help")
    keys = add_keys_subcommands(commands)
    keys.set_defaults(handler=run_keys_command)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
