"""The ``tradewire`` command: serve, devnet, keys."""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections.abc import Callable


class StopSignals:
    """What stops ``serve`` gracefully: SIGTERM, SIGINT, and SIGHUP (the terminal it runs in was
    closed, as with scripts/run.sh) — also while it is still starting. From the command's first
    moments (below, before its imports, which take a second or more) they are only noted here;
    serve() and supervise() then take them over (``hand_over``), and one noted meanwhile stops
    them at once: a start not yet begun is abandoned, one under way completes and is stopped."""

    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: list[int] = []
        self._before: dict[int, object] = {}  # the handlers noting replaced

    def note(self) -> None:
        for sig in self.signals:
            before = signal.signal(sig, self._noted)
            self._before.setdefault(sig, before)

    def forget(self) -> None:
        """The handlers from before ``note`` (for the commands other than serve)."""
        for sig, before in self._before.items():
            signal.signal(sig, before)
        self._before.clear()

    def _noted(self, signum: int, _frame: object) -> None:
        self.received.append(signum)
        _leave_a_closed_terminal()

    def hand_over(self, loop, stop: Callable[[], None]) -> None:
        """The event loop handles the signals from now on, each calling ``stop``; called at once
        when one came already."""
        for sig in self.signals:
            loop.add_signal_handler(sig, self._stop_on, sig, stop)
        if self.received:
            stop()

    def _stop_on(self, sig: int, stop: Callable[[], None]) -> None:
        self.received.append(sig)
        _leave_a_closed_terminal()
        stop()

    @property
    def first(self) -> str | None:
        """The name of the first signal that came, if any."""
        return signal.Signals(self.received[0]).name if self.received else None


def _leave_a_closed_terminal() -> None:
    """Standard output and error that are a terminal now closed — what SIGHUP usually says —
    fail every write (EIO): they go to /dev/null instead, else each log line written while the
    gateway stops would fail the call or trade that writes it."""
    for fd in (1, 2):
        try:
            os.write(fd, b"")
        except OSError as exc:
            if exc.errno == errno.EIO:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, fd)
                os.close(null)


STOP_SIGNALS = StopSignals()
if sys.argv[1:2] == ["serve"]:  # (as `tradewire serve` and `python -m tradewire.gateway.cli serve` run)
    STOP_SIGNALS.note()

import argparse  # noqa: E402 - after the stop signals: see StopSignals
import logging  # noqa: E402
from collections.abc import Sequence  # noqa: E402

import uvloop  # noqa: E402

from tradewire.core.auth.cli import add_keys_subcommands, run_keys_command  # noqa: E402
from tradewire.core.config import ConfigError, Settings, load_settings, misspelled_settings_said  # noqa: E402
from tradewire.core.logs import configure_logging  # noqa: E402
from tradewire.gateway.kill_switch_command import add_kill_switch_command  # noqa: E402


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

                return _run(supervise(settings, args.config, STOP_SIGNALS))
            from tradewire.gateway.server import serve

            _run(serve(settings, STOP_SIGNALS))
    except StartupError as exc:
        return _cannot_start(args, str(exc), code=1)
    return 0


def _run(coroutine):
    """``uvloop.run(coroutine)``; the stop signals are noted again once the loop is closed (it
    would leave SIGINT to raise KeyboardInterrupt, say, while the process exits)."""
    try:
        return uvloop.run(coroutine)
    finally:
        STOP_SIGNALS.note()


def _warn_of_misspelled_settings() -> None:
    for warning in misspelled_settings_said(os.environ):
        logging.getLogger("tradewire.config").warning(warning)


def _serve_as_worker(settings: Settings, args: argparse.Namespace) -> int:
    from tradewire.gateway.assembly import StartupError
    from tradewire.gateway.data_dir_lock import hold_data_dir
    from tradewire.gateway.server import serve
    from tradewire.gateway.workers import STOPPED_BEFORE_SERVING, outlives_supervisor, worker_settings

    if outlives_supervisor(args.supervisor_pid):  # it died while this worker was starting: nobody to serve for
        return 0
    # Every worker writes to the same stream: each line says which worker, and which process.
    configure_logging(settings.logging.level, process_fields={"worker": args.worker, "pid": os.getpid()})
    own = worker_settings(settings, args.worker)
    try:
        with hold_data_dir(own.storage.data_dir):  # while this worker serves
            if not _run(serve(own, STOP_SIGNALS, worker=args.worker)):
                return STOPPED_BEFORE_SERVING
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
    if argv[:1] == ["serve"]:
        STOP_SIGNALS.note()  # (if not yet: main() called with its own arguments)
    else:
        STOP_SIGNALS.forget()  # the other commands stop as any program does
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
