"""Packaging: server.json for the MCP registry, one version everywhere, and a wheel + sdist that install and run.

The registry schema (2025-12-11, Draft 7) is read from `../shared/schemas/server.schema.json` (relative to the
repository root's parent) when present; the semantic checks always run. The build test (`-m packaging`, in the
default run: ~10 s with uv's cache) builds with `uv build`, installs each artifact into a fresh venv pinned to
the lock file, and talks to the installed `uponai-mcp serve` over stdio.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import uponai_mcp
from tests.stdio_helpers import stdio_peer

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT.parent / "shared" / "schemas" / "server.schema.json"
SERVER_JSON = json.loads((ROOT / "server.json").read_text())
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
README = (ROOT / "README.md").read_text()
SECRET_VARS = {"UPONAI_API_KEY", "UPONAI_WEBHOOK_KEY", "UPONAI_MCP_TOKENS", "UPONAI_DATABASE_URL"}


@pytest.mark.skipif(not SCHEMA.exists(), reason=f"registry schema not found at {SCHEMA}")
def test_server_json_is_valid_against_the_registry_schema():
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    assert "2025-12-11" in SERVER_JSON["$schema"] and schema.get("$schema", "").startswith(
        "http://json-schema.org/draft-07")
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(SERVER_JSON), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]
    # and the schema does catch a bad document
    assert list(validator.iter_errors({**SERVER_JSON, "name": "uponai-mcp"}))


def test_one_version_and_name_everywhere():
    version = PYPROJECT["project"]["version"]
    package = SERVER_JSON["packages"][0]
    assert SERVER_JSON["version"] == package["version"] == uponai_mcp.__version__ == version
    assert package["registryType"] == "pypi" and package["identifier"] == PYPROJECT["project"]["name"]
    assert package["transport"] == {"type": "stdio"}
    name = SERVER_JSON["name"]
    assert re.fullmatch(r"io\.github\.[A-Za-z0-9-]+/[A-Za-z0-9._-]+", name), name
    assert SERVER_JSON["repository"]["url"].lower() == f"https://github.com/{name.removeprefix('io.github.')}".lower()
    # PyPI ownership check of the registry: the package's README (its PyPI description) names the server,
    # followed by a boundary (registry: strings.Contains(description, "mcp-name: " + name)).
    assert PYPROJECT["project"]["readme"] == "README.md"
    assert re.search(rf"mcp-name: {re.escape(name)}(\s|-->|$)", README), "README lacks `mcp-name: <name>`"
    assert 1 <= len(SERVER_JSON["description"]) <= 100
    assert len(SERVER_JSON.get("title", "")) <= 100


def test_environment_variables_match_the_readme_and_the_code():
    declared = {v["name"]: v for v in SERVER_JSON["packages"][0]["environmentVariables"]}
    in_readme = set(re.findall(r"^\| `(UPONAI_[A-Z0-9_]+)` \|", README, flags=re.M))
    assert in_readme, "the README's configuration table was not found"
    assert in_readme <= set(declared), f"declare in server.json: {sorted(in_readme - set(declared))}"
    code = "\n".join(p.read_text() for p in (ROOT / "uponai_mcp").rglob("*.py"))
    unread = [name for name in declared if f'"{name}"' not in code]
    assert not unread, f"server.json declares variables the code never reads: {unread}"
    for name, var in declared.items():
        assert var["description"] and "isRequired" in var and "isSecret" in var, name
        assert var["isSecret"] == (name in SECRET_VARS), name
        assert var["isRequired"] is False, f"{name}: the server runs without it (sandbox), so it is optional"
        if "choices" in var and "default" in var:
            assert var["default"] in var["choices"], name


def test_package_arguments_match_the_cli(capsys):
    from uponai_mcp.cli import main

    args = SERVER_JSON["packages"][0]["packageArguments"]
    assert args[0] == {"type": "positional", "value": "serve", "description": args[0]["description"]}
    transport = next(a for a in args if a.get("name") == "--transport")
    assert transport["choices"] == ["stdio", "streamable-http"] and transport["default"] == "stdio"
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    assert "--transport {stdio,streamable-http}" in usage and "--allowed-host" in usage


# --- build, install, run ------------------------------------------------------------------------------------


def _uv() -> str | None:
    return os.environ.get("UV") or shutil.which("uv")


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _install(uv: str, venv: Path, requirements: Path, artifact: Path) -> None:
    """A fresh venv with the locked dependencies and the artifact: from uv's cache when it can, else online."""
    _run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)])
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    cmd = [uv, "pip", "install", "--quiet", "--python", str(python), "-r", str(requirements), str(artifact)]
    offline = subprocess.run([*cmd, "--offline"], capture_output=True, text=True, timeout=300)
    if offline.returncode != 0:
        _run(cmd)


@pytest.mark.packaging
@pytest.mark.anyio
@pytest.mark.skipif(_uv() is None, reason="uv is not on PATH")
async def test_wheel_and_sdist_install_and_serve_over_stdio(tmp_path):
    uv = _uv()
    assert uv is not None
    dist = tmp_path / "dist"
    _run([uv, "build", "--quiet", "--out-dir", str(dist)], cwd=ROOT)
    version = PYPROJECT["project"]["version"]
    wheel = dist / f"uponai_mcp-{version}-py3-none-any.whl"
    sdist = dist / f"uponai_mcp-{version}.tar.gz"
    assert wheel.exists() and sdist.exists(), sorted(p.name for p in dist.iterdir())
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(f"uponai_mcp-{version}.dist-info/METADATA").decode()
        entry_points = zf.read(f"uponai_mcp-{version}.dist-info/entry_points.txt").decode()
    assert {"uponai_mcp/__init__.py", "uponai_mcp/http_app.py", "uponai_mcp/sandbox/__init__.py"} <= names
    assert not any(n.startswith("tests/") for n in names)
    assert f"mcp-name: {SERVER_JSON['name']}" in metadata and f"Version: {version}" in metadata
    assert "uponai-mcp = uponai_mcp.cli:main" in entry_points

    requirements = tmp_path / "requirements.txt"
    exported = _run([uv, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes", "--quiet",
                     "--format", "requirements-txt"], cwd=ROOT)
    requirements.write_text(exported.stdout)
    for artifact in (wheel, sdist):
        venv = tmp_path / f"venv-{artifact.suffix.strip('.')}"
        _install(uv, venv, requirements, artifact)
        bindir = venv / ("Scripts" if os.name == "nt" else "bin")
        where = _run([str(bindir / "python"), "-c", "import uponai_mcp; print(uponai_mcp.__file__)"],
                     cwd=tmp_path).stdout
        assert Path(where.strip()).is_relative_to(venv), where  # the installed copy, not the source tree
        env = {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", ""), "UPONAI_SANDBOX": "1",
               "UPONAI_DATA_DIR": str(tmp_path / f"data-{venv.name}")}
        async with stdio_peer([str(bindir / "uponai-mcp"), "serve"], env=env, cwd=tmp_path, exit_timeout=60) as peer:
            info = await peer.initialize()
            tools = await peer.request("tools/list", within=120)
            # a real round trip to the embedded sandbox (not a destination check: in a fresh venv the first one
            # compiles phonenumbers' ~19 MB of geodata, ~7 s, which the in-tree tests cover)
            numbers = await peer.call_tool("list_phone_numbers", within=120)
            assert numbers["result"]["structuredContent"]["numbers"], numbers
        assert info["serverInfo"]["version"] == version
        assert {"create_phone_call", "get_call"} <= {t["name"] for t in tools["result"]["tools"]}
        assert peer.bad_lines == [] and peer.proc.returncode == 0
