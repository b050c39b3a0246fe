"""Error results through a client written by others: the TypeScript SDK (1.32), which validates structuredContent
against a tool's output schema even on error results and throws when it does not fit. Skipped, not failed, where
node or the npm registry cannot be reached."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "ts_client"


@pytest.fixture(scope="module")
def ts_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm are not installed")
    if subprocess.run(["npm", "ping"], capture_output=True, timeout=60).returncode != 0:
        pytest.skip("the npm registry cannot be reached")
    work = tmp_path_factory.mktemp("ts_client")
    for name in ("package.json", "check.mjs"):
        shutil.copy(HERE / name, work / name)
    done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=work, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return work


def test_error_results_pass_the_typescript_clients_validation(ts_client: Path, tmp_path: Path) -> None:
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "HOME": str(tmp_path),
           "UPONAI_DATA_DIR": str(tmp_path)}
    run = subprocess.run(["node", "check.mjs", sys.executable], cwd=ts_client, capture_output=True, text=True,
                         timeout=180, env=env)
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 10 and all(line["ok"] for line in lines), run.stdout + run.stderr[-2000:]
    assert run.returncode == 0
