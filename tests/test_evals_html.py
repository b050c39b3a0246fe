"""The HTML report in a real headless Chromium (Debian's `chromium`, over the DevTools protocol): it renders,
its charts are laid out, hostile text stays text, and no request leaves the page. Skipped without chromium."""

from __future__ import annotations

from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from uponai_mcp.apps.browser import Chromium, find_chromium
from uponai_mcp.evals import html, junit, plan
from uponai_mcp.evals.report import EvalReport, item_result, summarize
from uponai_mcp.evals.suite import from_data

needs_browser = pytest.mark.skipif(find_chromium() is None, reason="no chromium installed (scripts/ensure_chromium.sh)")

HOSTILE = '<img src="http://attacker.example/x.png" onerror="alert(1)">'


def _report() -> EvalReport:
    suite = from_data({
        "name": "html-report", "from_number": "+14155550100", "repeat": 3,
        "variants": [{"agent_id": "agent_sales", "version": 2}, {"agent_id": "agent_sales", "version": 3}],
        "cases": [{"name": "books a demo", "to_number": "+12125550101", "expect": {"call_successful": True}},
                  {"name": f"hostile {HOSTILE}", "to_number": "+12125550102",
                   "expect": {"transcript_contains": [HOSTILE]}}],
    })
    results = []
    for i, item in enumerate(plan.expand(suite)):
        ok = item.variant_idx == 1 or item.repeat != 1  # v2 fails its second repeat: flaky
        call = {"call_id": f"call_{i}", "call_status": "ended", "duration_ms": 8000 + 700 * i,
                "latency": {"e2e": {"p50": 600 + 90 * i}}, "call_cost": {"combined_cost": 1.1 + i / 10},
                "transcript": f"Agent: hello {HOSTILE}", "call_analysis": {"call_successful": ok}}
        results.append(item_result(item, call))
    return EvalReport(run_id="eval_html", suite=suite.name, status="completed", seed=1,
                      summary=summarize(suite, results, total=len(results)), results=results)


def _fetching_attributes(page: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.extend((tag, name) for name, _ in attrs
                         if name in {"src", "href", "srcset", "action", "poster", "background", "data", "xlink:href"})

    Parser().feed(page)
    return found


def test_report_is_self_contained_with_a_strict_policy():
    page = html.render(_report())
    assert html.CSP.startswith("default-src 'none';") and "script-src 'sha256-" in html.CSP
    assert f'http-equiv="Content-Security-Policy" content="{escape(html.CSP)}"' in page
    # Nothing is loaded from anywhere: no element has an attribute that fetches, no CSS url() or @import.
    assert _fetching_attributes(page) == []
    assert "url(" not in page and "@import" not in page
    assert HOSTILE not in page and "&lt;img src=&quot;http://attacker.example/x.png&quot;" in page


def test_junit_escapes_and_counts():
    text = junit.render(_report())
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>') and HOSTILE not in text
    assert 'tests="12"' in text and text.count("<testcase ") == 12


@needs_browser
def test_report_renders_in_chromium_with_its_charts_and_no_request_leaves(tmp_path):
    path = tmp_path / "report.html"
    path.write_text(html.render(_report()), encoding="utf-8")
    with Chromium(width=1100, height=900) as browser:
        browser.navigate(path.as_uri())
        assert browser.evaluate("document.body.getAttribute('data-charts-rendered')") == "4"
        charts = browser.evaluate("[...document.querySelectorAll('svg.chart')].map(s => s.dataset.chart)")
        assert charts == ["pass rate per case", "pass rate per variant", "latency", "duration"]
        bars = browser.evaluate("document.querySelectorAll('svg.chart rect.bar').length")
        assert bars >= 4 + 2  # a bar per case x variant and per variant, plus the histograms
        assert browser.evaluate("document.querySelectorAll('.flaky').length") >= 1
        assert browser.evaluate("document.querySelectorAll('img').length") == 0  # the hostile text stayed text
        assert "attacker.example" in browser.evaluate("document.body.innerText")
        assert browser.requests() == [path.as_uri()], browser.requests()
        browser.screenshot(tmp_path / "report.png")
        assert (tmp_path / "report.png").stat().st_size > 10_000

        # The same detector sees a page that does fetch (so an empty list above means something).
        leaky = tmp_path / "leaky.html"
        leaky.write_text('<!doctype html><img src="http://127.0.0.1:9/never.png">', encoding="utf-8")
        browser.navigate(leaky.as_uri())
        assert "http://127.0.0.1:9/never.png" in browser.requests()


@needs_browser
def test_report_of_a_real_cli_run_renders(tmp_path):
    """The file `uponai-mcp eval --html` wrote in the CLI test's shape: rendered from a real summary."""
    from tests.test_evals import FIXTURE, SUITE, run_eval, write

    suite = write(tmp_path, "suite.yaml", SUITE.replace("repeat: 3", "repeat: 2"))
    out = run_eval(tmp_path, str(suite), "--fixture", str(FIXTURE), "--speed", "200", "--cps", "20", "--html", "r.html")
    assert out.returncode == 1, out.stderr
    with Chromium(width=1100, height=900) as browser:
        browser.navigate((tmp_path / "r.html").as_uri())
        assert browser.evaluate("document.body.getAttribute('data-charts-rendered')") == "4"
        assert browser.requests() == [(tmp_path / "r.html").as_uri()]
        assert Path(tmp_path / "r.html").read_text().count("<tr>") >= 12
