#!/usr/bin/env python3
"""Build the Claude Desktop extension bundle (`dist/uponai-mcp-<version>.mcpb`) from this checkout.

The bundle is a zip with `manifest.json` (from `mcpb/manifest.json`, with the version and tool list filled
in from the package itself), `pyproject.toml`, `uv.lock`, `README.md` and the `uponai_mcp` package. It uses
the `uv` server type: the host runs `uv run --frozen` in the unpacked bundle, which installs the locked
dependencies. The zip is deterministic (sorted names, fixed timestamps), so one source gives one SHA-256.

    uv run --frozen python scripts/build_mcpb.py [--out-dir dist] [--update-server-json]

`--update-server-json` writes the bundle's SHA-256 into server.json's `mcpb` package (do it when releasing).
Prints the bundle's path and SHA-256 on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP_FILES = ("pyproject.toml", "uv.lock", "README.md")
SKIP_DIRS = {"__pycache__"}
SKIP_SUFFIXES = {".pyc", ".pyo"}
EPOCH = (1980, 1, 1, 0, 0, 0)


def version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def package_files() -> list[Path]:
    files = [ROOT / name for name in TOP_FILES]
    for path in sorted((ROOT / "uponai_mcp").rglob("*")):
        rel = path.relative_to(ROOT)
        if path.is_file() and not SKIP_DIRS & set(rel.parts) and path.suffix not in SKIP_SUFFIXES:
            files.append(path)
    return files


def tool_list() -> list[dict[str, str]]:
    """Every tool the server registers (read-write mode), with the first sentence of its description."""
    sys.path.insert(0, str(ROOT))
    from uponai_mcp.config import Settings
    from uponai_mcp.server import create_server

    server = create_server(Settings(sandbox=True))
    tools = asyncio.run(server.list_tools())
    return [{"name": t.name, "description": (t.description or "").split(". ")[0].rstrip(".") + "."}
            for t in sorted(tools, key=lambda t: t.name)]


def manifest() -> dict:
    data = json.loads((ROOT / "mcpb" / "manifest.json").read_text())
    data["version"] = version()
    data["tools"] = tool_list()
    return data


def build(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle = out_dir / f"uponai-mcp-{version()}.mcpb"
    entries = [("manifest.json", (json.dumps(manifest(), indent=2) + "\n").encode())]
    entries += [(p.relative_to(ROOT).as_posix(), p.read_bytes()) for p in package_files()]
    with zipfile.ZipFile(bundle, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return bundle


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def update_server_json(bundle: Path, server_json: Path) -> None:
    data = json.loads(server_json.read_text())
    for package in data["packages"]:
        if package["registryType"] == "mcpb":
            package["fileSha256"] = sha256(bundle)
            package["version"] = version()
    server_json.write_text(json.dumps(data, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "dist")
    parser.add_argument("--update-server-json", action="store_true")
    args = parser.parse_args(argv)
    bundle = build(args.out_dir)
    if args.update_server_json:
        update_server_json(bundle, ROOT / "server.json")
    print(f"{bundle} {sha256(bundle)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
