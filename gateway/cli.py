"""The ``tradewire`` command: serve, devnet, keys."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import uvloop

from tradewire.core.auth.cli import add_keys_subcommands, run_keys_command
from tradewire.core.config import ConfigError, Settings, load_settings, misspelled_settings_said
from tradewire.core.logs import configure_logging
from tradewire.gateway.kill_switch_command import add_kill_switch_command


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        return _cannot_start(args, str(exc), code=2)
    if args.worker is not None:  # one of the supervisor's workers (gateway/workers.py)
        return _serve_as_worker(settings, args)
    configure_logging(settings.logging.level)
    _warn_of_misspelled_settings()
    from tradewire.gateway.assembly import StartupError
    from tradewire.gateway.data_dir_lock import hold_data_dir

    try:
        with hold_data_dir(settings.storage.data_dir):  # while this process serves
            if settings.server.workers > 1:
                from tradewire.gateway.workers import supervise

                return uvloop.run(supervise(settings, args.config))
            from tradewire.gateway.server import serve

            uvloop.run(serve(settings))
    except StartupError as exc:
        return _cannot_start(args, str(exc), code=1)
    return 0


def _warn_of_misspelled_settings() -> None:
    for warning in misspelled_settings_said(os.environ):
        logging.getLogger("tradewire.config").warning(warning)


def _serve_as_worker(settings: Settings, args: argparse.Namespace) -> int:
    from tradewire.gateway.assembly import StartupError
    from tradewire.gateway.data_dir_lock import hold_data_dir
    from tradewire.gateway.server import serve
    from tradewire.gateway.workers import outlives_supervisor, worker_settings

    if outlives_supervisor(args.supervisor_pid):  # it died while this worker was starting: nobody to serve for
        return 0
    # Every worker writes to the same stream: each line says which worker, and which process.
    configure_logging(settings.logging.level, process_fields={"worker": args.worker, "pid": os.getpid()})
    own = worker_settings(settings, args.worker)
    try:
        with hold_data_dir(own.storage.data_dir):  # while this worker serves
            uvloop.run(serve(own, worker=args.worker))
    except StartupError as exc:
        return _cannot_start(args, str(exc), code=1)
    return 0


def _cannot_start(args: argparse.Namespace, reason: str, code: int) -> int:
    """One ``tradewire: ...`` line and ``code``; a worker tells its supervisor instead, which
    says it once for the service."""
    if args.worker is not None:
        from tradewire.gateway.workers import report_start_failure

        return report_start_failure(args.report_fd, reason)
    print(f"tradewire: {reason}", file=sys.stderr)
    return code


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
    serve.add_argument("--report-fd", type=int, help=argparse.SUPPRESS)  # where a worker says why it could not start
    serve.add_argument("--supervisor-pid", type=int, help=argparse.SUPPRESS)  # a worker stops when it dies
    serve.set_defaults(handler=_serve)
    commands.add_parser("devnet", help="run the local Solana devnet (RPC, Jupiter, Jito); see devnet --help")
    keys = add_keys_subcommands(commands)
    keys.set_defaults(handler=run_keys_command)
    add_kill_switch_command(commands)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
