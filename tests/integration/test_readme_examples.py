"""README.md's "Calling it" examples, taken from the README itself and run verbatim (only the
address and the key changed) against a real gateway, so the README cannot promise what does
not work: every curl, grpcurl and buf curl command, the Python (grpcio) program and the
TypeScript (connect-web) one. Each command's answer is checked against what the README says it
answers; a command this file has no expectation for fails, so a new example gets one."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from support.gateway_process import GatewayProcess
from support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SECTION = "## Calling it"
SERVICE = "tradewire.v1.TradeExecutionService"
HTTP_ADDRESS, GRPC_ADDRESS = "localhost:8080", "localhost:50051"  # as the README writes them


# -- the README's examples --------------------------------------------------------------------


def section_text() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)  # (a renamed section fails here, loudly)
    end = text.find("\n## ", start + len(SECTION))
    return text[start:end if end != -1 else len(text)]


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", section_text(), re.S | re.M)


def shell_commands(block: str) -> list[str]:
    """The block's commands: lines joined while a quote is open or a line ends with ``\\``."""
    commands, pending = [], ""
    for line in block.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line + "\n"
        if line.endswith("\\"):
            continue
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on
            continue
        commands.append(pending.rstrip("\n"))
        pending = ""
    assert not pending, f"README: unterminated command:\n{pending}"
    return commands


SHELL_BLOCKS = code_blocks("bash")
EXAMPLES = [(index, command) for index, block in enumerate(SHELL_BLOCKS) for command in shell_commands(block)]


def localize(text: str, gateway: GatewayProcess) -> str:
    """The README's addresses → this gateway's; nothing may still point at a gateway of the README's."""
    local = text.replace(HTTP_ADDRESS, f"127.0.0.1:{gateway.http_port}").replace(GRPC_ADDRESS, gateway.grpc_target)
    assert "localhost" not in local and ":8080" not in local and ":50051" not in local, (
        f"a README example names an address this test does not replace:\n{text}")
    return local


# -- what each call answers, as the README says -----------------------------------------------


def json_values(text: str) -> list:
    """Every JSON value in ``text`` (grpcurl and buf curl print a stream's messages one after
    the other)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            return values
        value, at = decoder.raw_decode(text, at)
        values.append(value)


def one_message(out: str) -> dict:
    values = json_values(out)
    assert len(values) == 1 and isinstance(values[0], dict), f"expected one JSON message, got:\n{out}"
    return values[0]


def sse_messages(out: str) -> list[dict]:
    """SSE events: ``id:`` the sequence, ``data:`` a message, then ``event: end``."""
    events = [chunk for chunk in out.replace("\r\n", "\n").split("\n\n") if chunk.strip()]
    assert events and events[-1].splitlines() == ["event: end", "data: {}"], f"no final event: end:\n{out}"
    messages = []
    for event in events[:-1]:
        fields = dict(line.split(": ", 1) for line in event.splitlines())
        assert set(fields) == {"id", "data"}, f"not a status event: {event!r}"
        message = json.loads(fields["data"])
        assert int(fields["id"]) == int(message["sequence"]), event
        messages.append(message)
    return messages


def check_trade(result: dict, request_id: str) -> None:
    assert "code" not in result, f"an error, not a TradeResult: {result}"
    assert result["requestId"] == request_id and result["status"] == "TRADE_STATUS_FILLED", result
    assert float(result["amountOut"]) > 0 and int(result["fees"]["totalLamports"]) > 0, result


def check_status_stream(messages: list[dict], request_id: str) -> None:
    assert messages, "an empty status stream"
    assert all(m["requestId"] == request_id for m in messages), messages
    assert [int(m["sequence"]) for m in messages] == list(range(1, len(messages) + 1)), messages
    assert messages[0]["stage"] == "TRADE_STATUS_RECEIVED", messages[0]
    assert [m.get("terminal", False) for m in messages].count(True) == 1 and messages[-1]["terminal"], messages
    assert messages[-1]["stage"] == "TRADE_STATUS_FILLED", messages[-1]
    check_trade(messages[-1]["result"], request_id)


class Block:
    """The outcomes of one README block's commands, run in order (a trade, then its stream)."""

    def __init__(self) -> None:
        self.traded: list[str] = []  # request ids the block's commands executed, in order

    def check(self, command: str, out: str) -> None:
        words = shlex.split(command, comments=True)
        tool = Path(words[0]).name
        body = json.loads(words[words.index("-d") + 1]) if "-d" in words else None
        if words[0] == "scripts/buf.sh":
            assert words[1:] == ["lint"], command  # it assembles build/proto-deps for --schema .
            return
        if tool == "grpcurl":
            target = words[-1]
            if target == "list":
                services = out.split()
                for name in (SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                             "grpc.reflection.v1alpha.ServerReflection"):
                    assert name in services, f"{name} not listed: {services}"
                return
            if target == "grpc.health.v1.Health/Check":
                assert one_message(out) == {"status": "SERVING"}, out
                return
            self.rpc(target.rpartition("/")[2], body, out, command)
            return
        url = next((w for w in words if HTTP_ADDRESS in w or GRPC_ADDRESS in w), None)
        assert url is not None, f"no gateway address in {command!r}"
        path = urlsplit(url if "://" in url else f"http://{url}").path
        if tool == "buf" or path.startswith(f"/{SERVICE}/"):  # buf curl, or Connect over curl
            assert path.startswith(f"/{SERVICE}/"), command
            if tool == "curl":
                assert "content-type: application/json" in [w.lower() for w in words], command
            self.rpc(path.rpartition("/")[2], body, out, command)
            return
        assert tool == "curl", command
        if path == "/v1/trades" and body is not None:
            self.rpc("ExecuteTrade", body, out, command)
        elif (match := re.fullmatch(r"/v1/trades/([^/]+)/status", path)) is not None:
            if "accept: text/event-stream" in [w.lower() for w in words]:
                messages = sse_messages(out)
            else:  # NDJSON: {"result": ...} a line
                messages = [json.loads(line)["result"] for line in out.splitlines() if line.strip()]
            check_status_stream(messages, match.group(1))
        elif path in ("/v1/trades", "/v1/history"):
            self.rpc("GetTradeHistory", body, out, command)
        else:
            pytest.fail(f"README example with no expected outcome in {__name__}: {command}")

    def rpc(self, method: str, body: dict | None, out: str, command: str) -> None:
        request_id = (body or {}).get("requestId", (body or {}).get("request_id"))
        if method == "ExecuteTrade":
            check_trade(one_message(out), request_id)
            self.traded.append(request_id)
        elif method == "GetTrade":
            check_trade(one_message(out), request_id)
        elif method == "StreamExecutionStatus":
            check_status_stream(json_values(out), request_id)
        elif method == "GetTradeHistory":
            listed = [trade["requestId"] for trade in one_message(out)["trades"]]
            assert self.traded and set(self.traded) <= set(listed), (self.traded, listed)
            assert listed[0] == self.traded[-1], f"not newest first: {listed}"  # (the block's last trade)
        else:
            pytest.fail(f"README example with no expected outcome in {__name__}: {command}")


# -- running them -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):  # (its own: other suites send the README's request ids with other payloads)
    process = GatewayProcess(tmp_path_factory.mktemp("readme-gateway")).start()
    yield process
    code = process.stop()
    assert code == 0, f"gateway exited with {code}:\n{process.log_text()[-3000:]}"


def tool_env(gateway: GatewayProcess, *tools: str) -> dict[str, str]:
    """KEY as the README's reader has it, and the tools the examples name first on PATH."""
    dirs = [str(Path(require_tool(tool)).parent) for tool in tools]
    return {**os.environ, "KEY": gateway.key("alice"), "PATH": os.pathsep.join([*dirs, os.environ["PATH"]])}


def run(args: list[str], env: dict[str, str], cwd: Path = ROOT, timeout: float = 120) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"exit {done.returncode}: {args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_the_readme_has_an_example_for_every_protocol():
    """Each client and protocol keeps an example (a block deleted would otherwise pass)."""
    seen = set()
    for _, command in EXAMPLES:
        words = shlex.split(command, comments=True)
        if words[0] == "grpcurl":
            seen.add("grpcurl")
        elif words[0] == "buf":
            seen.add(f"buf curl {words[words.index('--protocol') + 1]}")
        elif words[0] == "curl":
            seen.add("curl connect" if f"/{SERVICE}/" in command else "curl http")
    assert seen >= {"grpcurl", "curl http", "curl connect", "buf curl connect", "buf curl grpcweb",
                    "buf curl grpc"}, seen
    assert len(code_blocks("python")) == 1 and len(code_blocks("ts")) == 1


@pytest.mark.parametrize("block", range(len(SHELL_BLOCKS)), ids=lambda i: f"block{i + 1}")
def test_shell_examples_do_what_the_readme_says(gateway, block):
    commands = [command for index, command in EXAMPLES if index == block]
    assert commands, "an empty example block"
    tools = sorted({Path(shlex.split(c, comments=True)[0]).name for c in commands} - {"buf.sh"})
    if any(c.startswith("scripts/buf.sh") for c in commands):
        tools.append("buf")  # (scripts/buf.sh runs the one on PATH, or the virtualenv's)
    env = tool_env(gateway, *tools)
    outcomes = Block()
    for command in commands:
        out = run(["bash", "-c", localize(command, gateway)], env)
        try:
            outcomes.check(command, out)
        except (AssertionError, LookupError, ValueError, TypeError) as exc:
            raise AssertionError(f"README example does not do what it says:\n{command}\n--- it answered:\n"
                                 f"{out[-3000:]}\n--- {exc!r}") from None


def test_python_example_prints_a_filled_trade(gateway, tmp_path):
    (source,) = code_blocks("python")
    documented = re.search(r"^# e\.g\. (.+?)  \(", source, re.M)
    assert documented, "the Python example's output comment is gone"
    (tmp_path / "tradewire-data").mkdir()
    (tmp_path / "tradewire-data" / "demo-api-key").write_text(gateway.key("alice") + "\n")
    (tmp_path / "example.py").write_text(localize(source, gateway))
    out = run([sys.executable, "example.py"], {**os.environ}, cwd=tmp_path).split()
    expected = documented.group(1).split()
    assert len(out) == len(expected) and out[0] == expected[0] == "TRADE_STATUS_FILLED", (out, expected)
    assert float(out[1]) > 0 and int(out[2]) == int(expected[2]), (out, expected)


def test_typescript_example_streams_a_trade_to_its_end(gateway, tmp_path):
    """Bundled (esbuild, from the dashboard's node_modules) as a module in web/ would be, run by node."""
    (source,) = code_blocks("ts")
    node = require_tool("node")
    esbuild = ROOT / "web" / "node_modules" / ".bin" / "esbuild"
    if not esbuild.exists():
        require_tool(str(esbuild))  # fails under CI / scripts/test.sh, skips elsewhere
    module_dir = tmp_path / "web"
    module_dir.mkdir()
    (tmp_path / "gen").symlink_to(ROOT / "gen")  # the example imports ../gen/ts/...
    (module_dir / "example.ts").write_text("const KEY = process.env.KEY;\n" + localize(source, gateway))
    env = {**os.environ, "KEY": gateway.key("alice"), "NODE_PATH": str(ROOT / "web" / "node_modules")}
    run([str(esbuild), "example.ts", "--bundle", "--platform=node", "--format=esm", "--target=node20",
         "--outfile=example.mjs", "--log-level=warning"], env, cwd=module_dir)
    lines = run([node, "example.mjs"], env, cwd=module_dir).splitlines()
    sequences = [int(line.split()[0].rstrip("n")) for line in lines]
    assert sequences == list(range(1, len(lines) + 1)) and len(lines) >= 8, lines
    assert lines[-1].split(" ", 2)[1:] == ["100", "trade filled"], lines
