"""``tradewire kill-switch [halt|reduce_only|off]``: engage or release the LIVE kill switch of
the gateway a configuration describes, or show it.

Where it is set: with ``[shared] redis_url``, in Redis — every replica on it reads it at each
LIVE trade; else in ``[live] kill_switch_file``, which the gateway reads at each LIVE trade.
Without either there is nothing a running gateway reads (``[live] kill_switch`` is read at
start), and the command says so. It prints the state that then holds: the strictest of the
configured ``[live] kill_switch``, the file and the shared switch. A change is audited
(``tw_admin``, core/audit/admin.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO

from tradewire.core.config import KILL_SWITCH_STATES, ConfigError, Settings, load_settings, misspelled_settings_said
from tradewire.core.errors import TradewireError


def add_kill_switch_command(subparsers: argparse._SubParsersAction) -> None:
    command = subparsers.add_parser(
        "kill-switch", help="engage or release the LIVE kill switch (every replica with [shared] redis_url)",
        description=__doc__.split("\n\n")[0])
    command.add_argument("state", nargs="?", type=_state, metavar="{halt,reduce_only,off}",
                         help="the new state (default: show the state that holds)")
    command.add_argument("--config", help="the gateway's TOML file (default: $TRADEWIRE_CONFIG)")
    command.set_defaults(handler=run_kill_switch_command)


def run_kill_switch_command(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=err)
        return 2
    # (as `tradewire serve` does: TRADEWIRE_SHARED_REDIS_URL=... would have set the file, which the
    # replicas on Redis do not all read, and said only that it was set)
    for warning in misspelled_settings_said(os.environ):
        print(f"warning: {warning}", file=err)
    if settings.shared.redis_url:
        return _on_redis(settings, args.state, out, err)
    path = settings.live.kill_switch_file
    if args.state is not None:
        if path is None:
            print("error: a running gateway reads no kill switch it could be given: set [shared] redis_url "
                  "(every replica) or [live] kill_switch_file", file=err)
            return 2
        from tradewire.core.executors.live.safety import kill_switch_state

        previous = kill_switch_state(settings.live)
        try:
            if args.state == "off":
                path.unlink(missing_ok=True)
            else:
                path.write_text(args.state + "\n")
        except OSError as exc:
            print(f"error: live.kill_switch_file: cannot write {path}: {exc.strerror or exc}", file=err)
            return 1
        _audit(settings, args.state, previous, "file", str(path), err)
        if not path.is_absolute():  # (read from the current folder: the gateway's may be another)
            print(f"warning: live.kill_switch_file is a relative path: this set {path.resolve()}, which a gateway "
                  "started from another folder does not read", file=err)
    _show(settings, None, out)
    return 0


def _on_redis(settings: Settings, state: str | None, out: TextIO, err: TextIO) -> int:
    from tradewire.core.shared import STORE_OUTAGES, command_client, not_answering, store_location
    from tradewire.core.shared.redis_kill_switch import SharedKillSwitch

    client = command_client(settings.shared.redis_url)
    try:
        client.ping()  # (not answering: one line here, not the switch's own warning too)
        switch = SharedKillSwitch(client)
        if state is not None:
            previous = switch.state()
            switch.set(state)
            _audit(settings, state, previous, "redis", store_location(client), err)
        _show(settings, switch.state(), out)
        return 0
    except STORE_OUTAGES as exc:
        print(f"error: {not_answering(exc)}", file=err)
        return 1
    except TradewireError as exc:  # it stopped answering in between
        print(f"error: {exc.message}", file=err)
        return 1
    finally:
        client.close()


def _audit(settings: Settings, state: str, previous: str, store: str, location: str, err: TextIO) -> None:
    from tradewire.core.audit.admin import record_admin_action

    record_admin_action(settings, err, action="kill_switch_set", target="live_kill_switch", store=store,
                        location=location, detail=f"{state} (was {previous})")


def _show(settings: Settings, shared: str | None, out: TextIO) -> None:
    from tradewire.core.executors.live.safety import kill_switch_state, strictest

    local = kill_switch_state(settings.live)
    sources = [f"settings and file: {local}"] + ([f"shared: {shared}"] if shared is not None else [])
    print(f"{strictest(local, shared or 'off')} ({', '.join(sources)})", file=out)


def _state(text: str) -> str:
    state = text.strip().lower().replace("-", "_")
    if state not in KILL_SWITCH_STATES:
        raise argparse.ArgumentTypeError(f"one of {', '.join(KILL_SWITCH_STATES)}, not {text!r}")
    return state
