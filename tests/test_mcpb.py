"""The Claude Desktop extension bundle (.mcpb): built by scripts/build_mcpb.py, deterministic, complete,
validated by the official `@anthropic-ai/mcpb` CLI (skipped where npm is unreachable), described in
server.json, and serving over stdio when run the way its manifest says.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.stdio_helpers import stdio_peer

ROOT = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
MCPB_CLI = "@anthropic-ai/mcpb@2"


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_mcpb", ROOT / "scripts" / "build_mcpb.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_mcpb = _load_builder()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return build_mcpb.build(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def unpacked(bundle: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle")
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(out)
    return out


def _npm_reachable() -> bool:
    if shutil.which("npm") is None or shutil.which("npx") is None:
        return False
    try:
        return subprocess.run(["npm", "ping"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_bundle_is_deterministic_and_holds_the_package(bundle: Path, tmp_path):
    again = build_mcpb.build(tmp_path)
    assert build_mcpb.sha256(again) == build_mcpb.sha256(bundle)
    assert bundle.name == f"uponai-mcp-{VERSION}.mcpb"
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read("manifest.json"))
    assert {"manifest.json", "pyproject.toml", "uv.lock", "README.md", "uponai_mcp/__main__.py",
            "uponai_mcp/apps/static/call.html", "uponai_mcp/apps/static/batch.html"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert manifest["version"] == VERSION and manifest["server"]["type"] == "uv"
    assert manifest["server"]["entry_point"] in names
    # the tool list is the server's own (read-write mode), so it cannot drift from the code
    listed = {t["name"] for t in manifest["tools"]}
    assert {"create_phone_call", "get_call", "wait_for_call", "create_batch_call", "get_batch"} <= listed
    assert all(t["description"].endswith(".") for t in manifest["tools"])
    # every user_config value the server reads is declared, and every declared one is used
    env = manifest["server"]["mcp_config"]["env"]
    used = set(re.findall(r"\$\{user_config\.(\w+)\}", json.dumps(env)))
    assert used == set(manifest["user_config"]) and manifest["user_config"]["api_key"]["sensitive"] is True


def test_server_json_describes_the_bundle(bundle: Path, tmp_path):
    server = json.loads((ROOT / "server.json").read_text())
    [package] = [p for p in server["packages"] if p["registryType"] == "mcpb"]
    assert package["identifier"].endswith(f"/v{VERSION}/uponai-mcp-{VERSION}.mcpb")
    assert package["identifier"].startswith(server["repository"]["url"] + "/releases/download/")
    assert package["version"] == VERSION and package["transport"] == {"type": "stdio"}
    assert re.fullmatch(r"[a-f0-9]{64}", package["fileSha256"])
    # the release step writes the built bundle's hash into server.json
    copy = tmp_path / "server.json"
    copy.write_text(json.dumps({**server, "packages": [{**p} for p in server["packages"]]}))
    build_mcpb.update_server_json(bundle, copy)
    [updated] = [p for p in json.loads(copy.read_text())["packages"] if p["registryType"] == "mcpb"]
    assert updated["fileSha256"] == build_mcpb.sha256(bundle)


@pytest.mark.skipif(not _npm_reachable(), reason="npm registry unreachable (npm ping failed) or npm missing")
def test_official_mcpb_cli_validates_the_bundle(bundle: Path, unpacked: Path):
    validate = subprocess.run(["npx", "-y", MCPB_CLI, "validate", str(unpacked / "manifest.json")],
                              capture_output=True, text=True, timeout=180)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "validation passes" in validate.stdout.lower()
    info = subprocess.run(["npx", "-y", MCPB_CLI, "info", str(bundle)], capture_output=True, text=True,
                          timeout=120)
    assert info.returncode == 0 and bundle.name in info.stdout, info.stdout + info.stderr


@pytest.mark.packaging
@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not on PATH")
@pytest.mark.anyio
async def test_the_unpacked_bundle_serves_as_its_manifest_says(unpacked: Path, tmp_path):
    manifest = json.loads((unpacked / "manifest.json").read_text())
    config = manifest["server"]["mcp_config"]
    # What Claude Desktop does: ${__dirname} is the unpacked bundle, unset user_config values are empty.
    args = [a.replace("${__dirname}", str(unpacked)) for a in config["args"]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPONAI_")}  # uv's certs, cache, index
    env.update({k: re.sub(r"\$\{user_config\.\w+\}", "", v) for k, v in config["env"].items()})
    env["UPONAI_DATA_DIR"] = str(tmp_path / "data")
    async with stdio_peer([shutil.which(config["command"]), *args], env=env, cwd=tmp_path,
                          exit_timeout=60) as peer:
        await peer.initialize()
        tools = (await peer.request("tools/list", {}))["result"]["tools"]
        assert {t["name"] for t in tools} >= {"create_phone_call", "get_call"}
        read = await peer.request("resources/read", {"uri": "ui://uponai/call"})
        assert "ui/initialize" in read["result"]["contents"][0]["text"]
