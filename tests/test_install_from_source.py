"""The README's from-source host configurations start the server, from a fresh clone.

Clones this repository (its committed state), reads the clone's README section "Install from source",
substitutes the clone for `/path/to/uponai-mcp` and `git+file://<clone>` for the GitHub URL, and runs every
distinct command those configurations give (Claude Desktop, Cursor, VS Code JSON; the Claude Code command
line; the locked `uv run --directory` variant) over stdio against the embedded sandbox.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.stdio_helpers import stdio_peer

ROOT = Path(__file__).resolve().parents[1]
CHECKOUT = "/path/to/uponai-mcp"
GIT_URL = "git+https://github.com/uponai/uponai-mcp"

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.skipif(shutil.which("git") is None or shutil.which("uvx") is None or shutil.which("uv") is None,
                       reason="git, uv and uvx are needed"),
    pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout"),
]


def section(readme: str) -> str:
    start = readme.index("## Install from source")
    end = readme.index("\n### ", start)
    return readme[start:end]


def commands(text: str) -> list[tuple[str, ...]]:
    """Every launch command in the section, in order, without duplicates."""
    found: list[tuple[str, ...]] = []
    for lang, body in re.findall(r"```(json|bash)\n(.*?)```", text, flags=re.S):
        if lang == "json":
            config = json.loads(body)
            for server in (config.get("mcpServers") or config.get("servers")).values():
                found.append((server["command"], *server["args"]))
        else:
            for line in body.splitlines():
                if line.startswith("claude mcp add"):
                    found.append(tuple(shlex.split(line.split(" -- ", 1)[1])))
    found += [tuple(shlex.split(m)) for m in re.findall(r"`(uv run --directory [^`]+)`", text.replace("\n", " "))]
    return list(dict.fromkeys(found))


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clone") / "uponai-mcp"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(out)], check=True, timeout=120)
    return out


def test_the_readme_gives_a_from_source_command_for_every_host(clone: Path):
    text = section((clone / "README.md").read_text())
    for host in ("Claude Desktop", "Cursor", "Claude Code", "VS Code"):
        assert host in text, host
    cmds = commands(text)
    assert ("uvx", "--from", CHECKOUT, "uponai-mcp", "serve") in cmds
    assert ("uvx", "--from", GIT_URL, "uponai-mcp", "serve") in cmds
    assert all(c[-2:] == ("uponai-mcp", "serve") for c in cmds), cmds


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["checkout", "git", "locked"])
async def test_each_from_source_command_serves_from_a_fresh_clone(clone: Path, tmp_path, kind: str):
    cmds = commands(section((clone / "README.md").read_text()))
    pick = {"checkout": lambda c: c[0] == "uvx" and CHECKOUT in c, "git": lambda c: GIT_URL in c,
            "locked": lambda c: c[:2] == ("uv", "run")}[kind]
    [cmd] = [c for c in cmds if pick(c)]
    argv = [a.replace(CHECKOUT, str(clone)).replace(GIT_URL, f"git+file://{clone}") for a in cmd]
    argv[0] = shutil.which(argv[0])
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPONAI_")}  # uv's certs, cache, index
    env.update(UPONAI_SANDBOX="1", UPONAI_DATA_DIR=str(tmp_path / "data"))
    async with stdio_peer(argv, env=env, cwd=tmp_path, exit_timeout=90) as peer:
        await peer.initialize()
        tools = {t["name"] for t in (await peer.request("tools/list", {}, within=120))["result"]["tools"]}
        assert {"create_phone_call", "get_call", "list_phone_numbers"} <= tools
        numbers = await peer.request("tools/call", {"name": "list_phone_numbers", "arguments": {}})
        assert not numbers["result"].get("isError"), numbers  # a real round trip to the embedded sandbox
        assert numbers["result"]["structuredContent"]["numbers"]
