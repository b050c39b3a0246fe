"""JUnit XML: one testcase per case x repeat x variant, each failed assertion named in its <failure>.

The shape the usual viewers read (Jenkins, GitLab, GitHub test reporters, Azure): <testsuites> with one
<testsuite> per variant, `classname` = suite.variant, `name` = case #repeat. A refused call is an <error>
(the test could not run); a failed assertion or a timeout is a <failure>.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from .report import REASON_REFUSED, REASON_TIMEOUT, EvalReport

_INVALID_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _clean(text: str) -> str:
    return _INVALID_XML.sub("?", text)


def render(report: EvalReport) -> str:
    s = report.summary
    root = ET.Element("testsuites", name=_clean(report.suite), tests=str(s.items),
                      failures=str(s.failed - s.refused), errors=str(s.refused))
    by_variant: dict[str, list] = {}
    for r in report.results:
        by_variant.setdefault(r.variant, []).append(r)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", report.suite)
    for variant, results in by_variant.items():
        failures = sum(1 for r in results if not r.passed and r.reason != REASON_REFUSED)
        errors = sum(1 for r in results if r.reason == REASON_REFUSED)
        suite_el = ET.SubElement(
            root, "testsuite", name=_clean(f"{report.suite} [{variant}]"), tests=str(len(results)),
            failures=str(failures), errors=str(errors), skipped="0",
            time=f"{sum(r.duration_s or 0 for r in results):.3f}",
            **({"timestamp": report.started_at[:19]} if report.started_at else {}))
        props = ET.SubElement(suite_el, "properties")
        ET.SubElement(props, "property", name="run_id", value=report.run_id)
        ET.SubElement(props, "property", name="variant", value=_clean(variant))
        for r in results:
            tc = ET.SubElement(suite_el, "testcase", classname=_clean(f"{slug}.{re.sub(r'[^A-Za-z0-9_-]+', '_', variant)}"),
                               name=_clean(f"{r.case} #{r.repeat + 1}"), time=f"{r.duration_s or 0:.3f}")
            if r.passed:
                continue
            failed = [c for c in r.checks if not c.passed]
            names = ", ".join(c.name for c in failed)
            body = "\n".join(_clean(c.message) for c in failed)
            if r.call_id:
                body += f"\ncall_id: {r.call_id}"
            if r.reason == REASON_REFUSED:
                ET.SubElement(tc, "error", message=_clean(f"not placed: {r.refusal_code}"),
                              type="refused").text = body
            else:
                kind = "timeout" if r.reason == REASON_TIMEOUT else "assertion"
                ET.SubElement(tc, "failure", message=_clean(f"{kind}: {names}"), type=kind).text = body
            ET.SubElement(tc, "system-out").text = _clean(
                f"status={r.status} disconnection_reason={r.disconnection_reason} call_id={r.call_id}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
