"""`uponai-mcp eval` as a user runs it: a real subprocess, the real sandbox (embedded, or its own process for a
resume), real reports on disk. Exit codes, scores, flakiness, comparisons, determinism, resume without double dials.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "eval_sandbox.json"

SUITE = """
name: sales-compare
from_number: "+14155550102"
repeat: 3
timeout_s: 30
variants:
  - {agent_id: agent_sales, version: 2}
  - {agent_id: agent_sales, version: 3}
cases:
  - name: books a demo            # v2 succeeds half the time (fixture): flaky; v3 always
    to_number: "+12125550101"
    dynamic_variables: {customer_name: Ada}
    metadata: {lead: "42"}
    expect:
      status: ended
      disconnection_reason: [agent_hangup, user_hangup]
      call_successful: true
      in_voicemail: false
      transcript_contains: ["Ada"]
      transcript_not_contains: ["I am an AI"]
      tool_called: [check_availability]
      max_duration_s: 120
      custom_analysis: {demo_booked: true}
  - name: stays fast              # v2 is slow (fixture): fails every time; v3 passes
    to_number: "+12125550102"
    expect: {max_latency_p50_ms: 1200, tool_called: [send_summary]}
  - name: voicemail handled       # passes everywhere
    to_number: "+12125550104"
    expect: {in_voicemail: true, status: ended, user_sentiment: [Neutral]}
"""


def env_without_platform(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPONAI_")}
    env.update(UPONAI_DATA_DIR=str(tmp_path / "data"), **extra)
    return env


def run_eval(tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run([sys.executable, "-m", "uponai_mcp", "eval", *args], capture_output=True, text=True,
                          env=env or env_without_platform(tmp_path), timeout=timeout, cwd=tmp_path)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def normalized(report: dict) -> dict:
    """The report without what may differ between two runs: its id and times, and the platform's call ids."""
    report = {k: v for k, v in report.items() if k not in ("run_id", "started_at", "finished_at")}
    report["results"] = [{k: v for k, v in r.items() if k != "call_id"} for r in report["results"]]
    return report


def test_suite_with_passing_failing_and_flaky_cases_and_two_variants(tmp_path):
    suite = write(tmp_path, "suite.yaml", SUITE)
    runs = []
    for i in (1, 2):
        out = run_eval(tmp_path, str(suite), "--fixture", str(FIXTURE), "--speed", "200", "--cps", "20",
                       "--seed", "7", "--json", f"r{i}.json", "--junit", f"r{i}.xml", "--html", f"r{i}.html")
        assert out.returncode == 1, out.stderr  # a case failed
        runs.append((out, json.loads((tmp_path / f"r{i}.json").read_text())))
    out, report = runs[0]
    s = report["summary"]
    assert s["items"] == s["scored"] == 18 and s["refused"] == 0 and s["timeouts"] == 0
    cases = {c["case"]: c for c in s["cases"]}
    rates = {(c, v["variant"]): (v["rate"]["passed"], v["rate"]["runs"]) for c in cases for v in cases[c]["by_variant"]}
    assert rates[("stays fast", "agent_sales v2")] == (0, 3) and rates[("stays fast", "agent_sales v3")] == (3, 3)
    assert rates[("voicemail handled", "agent_sales v2")] == rates[("voicemail handled", "agent_sales v3")] == (3, 3)
    assert rates[("books a demo", "agent_sales v3")] == (3, 3)
    assert 0 < rates[("books a demo", "agent_sales v2")][0] < 3, "seed 7 makes v2 flaky on this case"
    assert s["flaky_cases"] == ["books a demo"]
    assert any("max_latency_p50_ms: expected 1200.0, got" in f for f in cases["stays fast"]["failures"])
    (comparison,) = s["comparisons"]
    assert comparison["a"] == "agent_sales v2" and comparison["b"] == "agent_sales v3"
    assert comparison["verdict"].startswith(("agent_sales v3 is better", "not enough runs to tell"))
    assert comparison["b_rate"]["passed"] == 9 and 0 < comparison["p_value"] < 1
    # The summary table on stdout; progress on stderr.
    assert "FLAKY" in out.stdout and "books a demo" in out.stdout and comparison["verdict"] in out.stdout
    assert "run eval_" in out.stderr and "resume with --resume" in out.stderr
    # JUnit: one testcase per case x repeat x variant, each failed assertion named.
    root = ET.parse(tmp_path / "r1.xml").getroot()
    assert root.tag == "testsuites" and int(root.get("tests")) == 18
    testcases = root.findall("./testsuite/testcase")
    assert len(testcases) == 18 and {tc.get("classname") for tc in testcases} == {
        "sales-compare.agent_sales_v2", "sales-compare.agent_sales_v3"}
    failures = [tc.find("failure") for tc in testcases if tc.find("failure") is not None]
    assert len(failures) == 18 - s["passed"] == int(root.get("failures"))
    assert any(f.get("message") == "assertion: tool_called[send_summary], max_latency_p50_ms" for f in failures)
    assert sum(int(ts.get("tests")) for ts in root.findall("testsuite")) == 18
    # Same suite and seed on the sandbox: the same report, apart from times and call ids.
    assert normalized(runs[0][1]) == normalized(runs[1][1])
    assert (tmp_path / "r1.html").read_text().startswith("<!doctype html>")


def test_all_passing_suite_exits_0_and_repeat_flag_overrides(tmp_path):
    suite = write(tmp_path, "ok.json", json.dumps({
        "name": "ok", "from_number": "+14155550100", "timeout_s": 30,
        "cases": [{"name": "voicemail", "to_number": "+12125550104", "expect": {"in_voicemail": True}}]}))
    out = run_eval(tmp_path, str(suite), "--repeat", "2", "--speed", "200", "--json", "r.json")
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"]["passed"] == report["summary"]["items"] == 2
    assert "2/2 passed" in out.stdout


def test_invalid_suite_exits_2_with_every_problem_and_dials_nothing(tmp_path):
    bad = write(tmp_path, "bad.yaml", SUITE.replace("repeat: 3", "repeat: true").replace(
        "call_successful: true", "call_successfull: true"))
    out = run_eval(tmp_path, str(bad))
    assert out.returncode == 2
    assert "bad.yaml, repeat: Input should be a valid integer" in out.stderr
    assert "bad.yaml, case 'books a demo', expect.call_successfull: unknown key" in out.stderr
    assert "run eval_" not in out.stderr and out.stdout == ""


def test_guardrail_refusals_are_reported_per_case_before_anything_dials(tmp_path):
    refused = write(tmp_path, "refused.yaml", """
name: refused
from_number: "+14155550100"
variants: [{agent_id: agent_sales, version: 3}, {agent_id: agent_nobody}]
cases:
  - {name: emergency, to_number: "911"}
  - {name: premium, to_number: "+19005550123"}
  - {name: fine, to_number: "+12125550101"}
""")
    out = run_eval(tmp_path, str(refused), "--speed", "200")
    assert out.returncode == 2, out.stderr
    assert "case 'emergency', to_number: emergency_number" in out.stderr
    assert "case 'premium', to_number:" in out.stderr
    assert "case 'fine', variants[1]: not_found" in out.stderr
    assert "run eval_" not in out.stderr


def _sandbox_process(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "uponai_mcp", "sandbox", "--port", "0", "--log-level", "warning",
                             *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "listening on " in line:
            # Keep reading its stderr: a full pipe would stall the sandbox mid-test.
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, line.split("listening on ", 1)[1].split()[0]
    proc.kill()
    raise AssertionError("the sandbox did not start")


def test_killed_run_resumes_without_dialling_anything_twice(tmp_path):
    sandbox, url = _sandbox_process("--fixture", str(FIXTURE), "--speed", "100")
    try:
        env = env_without_platform(tmp_path, UPONAI_API_KEY="sk_sandbox", UPONAI_BASE_URL=url, UPONAI_DIALECT="retell",
                                   UPONAI_CONFIRM="never", UPONAI_CALLING_WINDOW="off",
                                   UPONAI_MAX_ATTEMPTS_PER_DESTINATION="50")
        http = httpx.Client(base_url=url, headers={"Authorization": "Bearer sk_sandbox"})
        suite = write(tmp_path, "suite.yaml", SUITE.replace('"+14155550102"', '"+14155550100"'))  # Twilio: 1 CPS
        # An invalid run against the same platform places nothing.
        bad = write(tmp_path, "bad.yaml", SUITE.replace('"+12125550104"', '"911"'))
        assert run_eval(tmp_path, str(bad), env=env).returncode == 2
        assert http.get("/_sandbox/stats").json()["creates_accepted"] == 0

        first = subprocess.Popen([sys.executable, "-m", "uponai_mcp", "eval", str(suite), "--repeat", "2"],
                                 env=env, cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        run_id = None
        deadline = time.monotonic() + 60
        while run_id is None and time.monotonic() < deadline:
            line = first.stderr.readline()
            if "resume with --resume " in line:
                run_id = line.rsplit(" ", 1)[1].strip()
        assert run_id, "the run id is printed at the start"
        while http.get("/_sandbox/stats").json()["creates_accepted"] < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)  # no clean-up of any kind
        first.wait(10)
        placed_before = http.get("/_sandbox/stats").json()["creates_accepted"]
        assert 5 <= placed_before < 12

        out = run_eval(tmp_path, "--resume", run_id, "--json", "final.json", env=env)
        assert out.returncode == 1, out.stderr
        stats = http.get("/_sandbox/stats").json()
        assert stats["creates_accepted"] == 12, "every item dialled exactly once across both processes"
        calls = http.get("/_sandbox/calls").json()["calls"]
        marks = [c["metadata"]["uponai_eval"] for c in calls]
        assert len(marks) == len(set(marks)) == 12
        report = json.loads((tmp_path / "final.json").read_text())
        assert report["run_id"] == run_id and report["status"] == "completed"
        assert report["summary"]["scored"] == 12 and report["summary"]["timeouts"] == 0
        assert report["summary"]["refused"] == 0
        assert len({r["call_id"] for r in report["results"]}) == 12
        # Resuming a finished run dials nothing and reports the same.
        again = run_eval(tmp_path, "--resume", run_id, "--json", "again.json", env=env)
        assert again.returncode == 1
        assert http.get("/_sandbox/stats").json()["creates_accepted"] == 12
        assert normalized(json.loads((tmp_path / "again.json").read_text())) == normalized(report)
    finally:
        sandbox.terminate()
        sandbox.wait(10)


def test_resume_refuses_on_the_embedded_sandbox(tmp_path):
    out = run_eval(tmp_path, "--resume", "eval_x")
    assert out.returncode == 2 and "outlives this process" in out.stderr


@pytest.mark.parametrize("argv", [[], ["s.yaml", "--repeat", "0"]])
def test_usage_errors_exit_2(tmp_path, argv):
    assert run_eval(tmp_path, *argv).returncode == 2


def test_a_call_not_analyzed_in_time_fails_with_reason_timeout(tmp_path):
    suite = write(tmp_path, "slow.yaml", """
name: slow
from_number: "+14155550100"
timeout_s: 0.5
cases:
  - {name: long call, to_number: "+12125550109", expect: {status: ended}}   # ends after ~60 s nominal
""")
    out = run_eval(tmp_path, str(suite), "--speed", "20", "--json", "r.json", "--junit", "r.xml")
    assert out.returncode == 1, out.stderr
    (result,) = json.loads((tmp_path / "r.json").read_text())["results"]
    assert result["reason"] == "timeout" and result["checks"][0]["name"] == "analyzed"
    assert result["call_id"] and result["status"] in ("registered", "ongoing")
    failure = ET.parse(tmp_path / "r.xml").getroot().find("./testsuite/testcase/failure")
    assert failure.get("type") == "timeout"
    assert "0/1 passed" in out.stdout and "1 timed out" in out.stdout
