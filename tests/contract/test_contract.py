"""The contract's guards: gen/ is exactly what buf generates, lint is clean, no breaking change."""

import filecmp
import subprocess
from pathlib import Path

from support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _differences(a: Path, b: Path) -> list[str]:
    cmp = filecmp.dircmp(a, b)
    out = [f"only in committed gen/: {p}" for p in cmp.left_only] + [f"missing from gen/: {p}" for p in cmp.right_only]
    out += [f"differs: {p}" for p in cmp.diff_files]
    for sub in cmp.common_dirs:
        out += [f"{sub}/{d}" for d in _differences(a / sub, b / sub)]
    return out


def test_gen_is_what_buf_generate_produces(tmp_path):
    require_tool("buf")
    done = _run("scripts/buf.sh", "generate", "-o", str(tmp_path))
    assert done.returncode == 0, done.stderr
    # filecmp's shallow mode trusts equal size+mtime; compare contents.
    filecmp.clear_cache()
    diffs = _differences(ROOT / "gen", tmp_path / "gen")
    for path in (ROOT / "gen").rglob("*"):
        if path.is_file():
            twin = tmp_path / "gen" / path.relative_to(ROOT / "gen")
            if twin.exists() and twin.read_bytes() != path.read_bytes():
                diffs.append(f"content differs: {path.relative_to(ROOT)}")
    assert not diffs, "gen/ is stale; run scripts/buf.sh generate:\n" + "\n".join(sorted(set(diffs)))


def test_buf_lint_is_clean():
    require_tool("buf")
    done = _run("scripts/buf.sh", "lint")
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_breaking_change_against_main():
    require_tool("buf")
    done = _run("scripts/buf.sh", "breaking", "main")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_rpc_has_an_http_binding():
    from google.api import annotations_pb2

    from tradewire.gateway.calls import RPCS

    for rpc in RPCS:
        rule = rpc.descriptor.GetOptions().Extensions[annotations_pb2.http]
        assert rule.WhichOneof("pattern"), f"{rpc.name} has no google.api.http binding"
