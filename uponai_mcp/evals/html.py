"""A self-contained HTML report: inline CSS and SVG charts, no external resource of any kind.

The Content-Security-Policy forbids every fetch (default-src 'none'); the one inline script is allowed by its
hash and only checks, in the browser, that each chart was laid out (tests read `data-charts-rendered`).
Every string from the run (case names, assertion messages: callee-controlled text included) is escaped.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json

from .report import Distribution, EvalReport, ItemResult

_SCRIPT = (
    "(function(){var n=0;document.querySelectorAll('svg.chart').forEach(function(s){var b=s.getBBox();"
    "if(b.width>0&&b.height>0){n++;}});document.body.setAttribute('data-charts-rendered',String(n));})();"
)
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
CSP = f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{_SCRIPT_HASH}'; " \
      "base-uri 'none'; form-action 'none'"

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2330;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#5b6475}.ok{color:#17803d}.bad{color:#b42318}.flaky{background:#fff4d6;color:#8a5a00;
padding:1px 6px;border-radius:8px;font-size:12px;font-weight:600}
table{border-collapse:collapse;margin:8px 0}td,th{border-bottom:1px solid #e3e6ec;padding:4px 10px;text-align:left;
vertical-align:top}th{background:#f5f7fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{margin:6px 0;padding:8px 12px;background:#f5f7fa;border-left:4px solid #5b6cff}
svg.chart{display:block;margin:8px 0}svg text{font:12px system-ui,sans-serif;fill:#1d2330}
details{margin:2px 0}code{font-size:12px}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.0f}%"


def _rate_chart(name: str, rows: list[tuple[str, float | None, float | None, float | None, bool]]) -> str:
    """Horizontal bars of pass rate with the 95 % Wilson interval as a whisker."""
    label_w, bar_w, row_h = 260, 420, 24
    h = row_h * len(rows) + 30
    out = [f'<svg class="chart" data-chart="{_e(name)}" width="{label_w + bar_w + 80}" height="{h}" '
           f'role="img" aria-label="{_e(name)}">']
    for i, (label, rate, low, high, flaky) in enumerate(rows):
        y = 10 + i * row_h
        text = label if len(label) <= 38 else label[:35] + "..."
        out.append(f'<text x="0" y="{y + 15}">{_e(text)}{" (flaky)" if flaky else ""}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 3}" width="{bar_w}" height="16" fill="#eef0f4"/>')
        if rate is not None:
            color = "#17803d" if rate >= 0.999 else "#d99a00" if flaky or rate >= 0.5 else "#b42318"
            out.append(f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{bar_w * rate:.1f}" height="16" '
                       f'fill="{color}"/>')
            if low is not None and high is not None:
                x1, x2 = label_w + bar_w * low, label_w + bar_w * high
                out.append(f'<line x1="{x1:.1f}" x2="{x2:.1f}" y1="{y + 11}" y2="{y + 11}" stroke="#1d2330" '
                           f'stroke-width="1.5"/><line x1="{x1:.1f}" x2="{x1:.1f}" y1="{y + 6}" y2="{y + 16}" '
                           f'stroke="#1d2330"/><line x1="{x2:.1f}" x2="{x2:.1f}" y1="{y + 6}" y2="{y + 16}" '
                           f'stroke="#1d2330"/>')
        out.append(f'<text x="{label_w + bar_w + 8}" y="{y + 15}">{_pct(rate)}</text>')
    out.append(f'<text x="{label_w}" y="{h - 2}">0%</text><text x="{label_w + bar_w - 28}" y="{h - 2}">100%</text>')
    out.append("</svg>")
    return "".join(out)


def _histogram(name: str, series: list[tuple[str, Distribution]], unit: str, bins: int = 12) -> str:
    """One small histogram per variant, on a shared x axis."""
    values = [v for _, d in series for v in d.values]
    if not values:
        return f'<p class="meta">No {name} data.</p>'
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    width, height, gap = 520, 90, 24
    colors = ["#5b6cff", "#e0730b", "#17803d", "#b42318", "#7a3fd1", "#0a8aa0"]
    total_h = (height + gap) * len(series) + 20
    out = [f'<svg class="chart" data-chart="{_e(name)}" width="{width + 200}" height="{total_h}" role="img" '
           f'aria-label="{_e(name)}">']
    for si, (label, dist) in enumerate(series):
        counts = [0] * bins
        for v in dist.values:
            counts[min(bins - 1, int((v - lo) / span * bins))] += 1
        top = max(counts) or 1
        y0 = si * (height + gap) + 16
        out.append(f'<text x="0" y="{y0 - 4}">{_e(label)}: p50 {dist.p50 if dist.p50 is not None else "-"} {unit}, '
                   f'n={dist.count}</text>')
        bw = width / bins
        for b, c in enumerate(counts):
            bh = height * c / top
            out.append(f'<rect class="bar" x="{b * bw:.1f}" y="{y0 + height - bh:.1f}" width="{bw - 2:.1f}" '
                       f'height="{bh:.1f}" fill="{colors[si % len(colors)]}"/>')
    out.append(f'<text x="0" y="{total_h - 2}">{lo:g} {unit}</text>'
               f'<text x="{width - 60}" y="{total_h - 2}">{hi:g} {unit}</text></svg>')
    return "".join(out)


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _result_row(r: ItemResult) -> str:
    failed = [c for c in r.checks if not c.passed]
    detail = "".join(f"<li><code>{_e(c.message)}</code></li>" for c in failed)
    outcome = '<span class="ok">pass</span>' if r.passed else f'<span class="bad">{_e(r.reason)}</span>'
    body = f"<details><summary>{len(failed)} failed</summary><ul>{detail}</ul></details>" if failed else ""
    return (f"<tr><td>{_e(r.case)}</td><td>{_e(r.variant)}</td><td class=num>{r.repeat + 1}</td><td>{outcome}"
            f"{body}</td><td>{_e(r.status or '-')}</td><td class=num>{_num(r.duration_s, 1)}</td>"
            f"<td class=num>{_num(r.latency_p50_ms, 0)}</td><td class=num>{_num(r.cost_cents, 2)}</td>"
            f"<td><code>{_e(r.call_id or '-')}</code></td></tr>")


def render(report: EvalReport) -> str:
    s = report.summary
    verdicts = "".join(f'<div class="verdict">{_e(c.verdict)}</div>' for c in s.comparisons)
    case_rows = []
    for c in s.cases:
        for v in c.by_variant:
            label = c.case if len(c.by_variant) == 1 else f"{c.case} / {v.variant}"
            case_rows.append((label, v.rate.rate, v.rate.low, v.rate.high, v.flaky))
    variant_rows = [(v.variant, v.rate.rate, v.rate.low, v.rate.high, False) for v in s.variants]
    case_table = "".join(
        f"<tr><td>{_e(c.case)}{' <span class=flaky>flaky</span>' if c.flaky else ''}</td><td class=num>"
        f"{c.rate.passed}/{c.rate.runs}</td><td class=num>{_pct(c.rate.rate)}</td><td class=num>"
        f"{_pct(c.rate.low)}-{_pct(c.rate.high)}</td><td>{'<br>'.join(_e(f) for f in c.failures[:5])}</td></tr>"
        for c in s.cases)
    cost_table = "".join(
        f"<tr><td>{_e(v.variant)}</td><td class=num>{v.cost_cents_total:.2f}</td><td class=num>"
        f"{'-' if v.cost_cents_mean is None else f'{v.cost_cents_mean:.2f}'}</td></tr>" for v in s.variants)
    data = json.dumps(s.model_dump(mode="json"), separators=(",", ":")).replace("<", "\\u003c")
    status_cls = "ok" if s.ok else "bad"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Evaluation {_e(report.suite)} - {_e(report.run_id)}</title><style>{_CSS}</style></head>
<body>
<h1>Evaluation: {_e(report.suite)}</h1>
<div class="meta">run <code>{_e(report.run_id)}</code> - {_e(report.status)}{f" - seed {report.seed}" if report.seed is not None else ""}
{f" - started {_e(report.started_at)}" if report.started_at else ""}</div>
<p class="{status_cls}"><b>{s.passed}/{s.scored} passed ({_pct(s.rate.rate)}, 95% CI {_pct(s.rate.low)}-{_pct(s.rate.high)})</b>;
{s.timeouts} timed out, {s.refused} refused{f", {s.items - s.scored} not run" if s.scored < s.items else ""};
{len(s.flaky_cases)} flaky case(s); cost {s.cost_cents_total / 100:.2f} USD.</p>
{verdicts}
<h2>Pass rate per case</h2>{_rate_chart("pass rate per case", case_rows)}
<h2>Pass rate per variant</h2>{_rate_chart("pass rate per variant", variant_rows)}
<h2>Latency (e2e p50 per call)</h2>{_histogram("latency", [(v.variant, v.latency_p50_ms) for v in s.variants], "ms")}
<h2>Duration</h2>{_histogram("duration", [(v.variant, v.duration_s) for v in s.variants], "s")}
<h2>Cases</h2><table><tr><th>case</th><th>passed</th><th>rate</th><th>95% CI</th><th>failed assertions</th></tr>
{case_table}</table>
<h2>Cost (cents)</h2><table><tr><th>variant</th><th>total</th><th>per call</th></tr>{cost_table}</table>
<h2>Every call</h2><table><tr><th>case</th><th>variant</th><th>#</th><th>outcome</th><th>status</th><th>duration s</th>
<th>latency p50 ms</th><th>cost c</th><th>call</th></tr>{"".join(_result_row(r) for r in report.results)}</table>
<script type="application/json" id="summary">{data}</script>
<script>{_SCRIPT}</script>
</body></html>
"""
