"""Suite validation, scoring and statistics: pure parts of the evaluations, checked against known values."""

from __future__ import annotations

import json
import math

import pytest

from uponai_mcp.evals import plan, scoring, stats
from uponai_mcp.evals.report import item_result, summarize
from uponai_mcp.evals.suite import Expect, SuiteInvalid, load_text

GOOD = """
name: sales-smoke
from_number: "+14155550100"
repeat: 3
variants:
  - {agent_id: agent_sales, version: 2}
  - {agent_id: agent_sales, version: 3}
cases:
  - name: books a demo
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
      tool_called: [book_demo]
      max_duration_s: 120
      max_latency_p50_ms: 1500
      custom_analysis: {booked: true}
"""


def test_the_issue_example_parses_as_yaml_and_as_json():
    suite = load_text(GOOD, file="s.yaml")
    assert suite.repeat == 3 and len(suite.variants) == 2 and suite.cases[0].expect.tool_called == ["book_demo"]
    same = load_text(json.dumps(suite.model_dump(mode="json", exclude_none=True)), file="s.json")
    assert same == suite
    assert suite.item_count() == 6 and suite.item_count(repeat=5) == 10


def test_every_problem_is_reported_at_once_with_file_case_and_key():
    bad = GOOD.replace("repeat: 3", 'repeat: "3"').replace("call_successful: true", "call_successful: 1") \
        .replace("max_duration_s: 120", "max_duration_s: 120\n      transcript_contians: [x]") \
        .replace("version: 2}", "version: true}")
    bad += '  - name: second\n    to_number: +12125550102\n    surprise: 1\n'
    with pytest.raises(SuiteInvalid) as exc:
        load_text(bad, file="suites/s.yaml")
    found = {(p.case, p.key): p.message for p in exc.value.problems}
    assert set(found) == {
        (None, "repeat"), ("books a demo", "expect.call_successful"), ("books a demo", "expect.transcript_contians"),
        (None, "variants.0.version"), ("second", "to_number"), ("second", "surprise"),
    }, found
    assert "unknown key" in found[("second", "surprise")]
    assert "quote phone numbers" in found[("second", "to_number")]
    assert all(p.file == "suites/s.yaml" for p in exc.value.problems)
    assert "suites/s.yaml, case 'books a demo', expect.call_successful:" in str(exc.value)


def test_duplicate_case_names_and_a_non_mapping_are_refused():
    with pytest.raises(SuiteInvalid, match="named 'a'"):
        load_text('{"name": "x", "from_number": "+14155550100", "cases": [{"name": "a", "to_number": "+1"},'
                  ' {"name": "a", "to_number": "+2"}]}', file="s.json")
    with pytest.raises(SuiteInvalid, match="mapping"):
        load_text("- just a list", file="s.yaml")
    with pytest.raises(SuiteInvalid, match="not valid YAML"):
        load_text("name: [", file="s.yaml")


def test_items_are_repeat_major_with_stable_keys_and_no_run_id_in_the_request():
    suite = load_text(GOOD, file="s.yaml")
    items = plan.expand(suite)
    assert [i.key for i in items] == ["0:0:0", "0:0:1", "0:1:0", "0:1:1", "0:2:0", "0:2:1"]
    assert plan.idempotency_key("eval_x", items[3]) == "eval:eval_x:0:1:1"
    req = items[1].request
    assert req.override_agent_id == "agent_sales" and req.override_agent_version == 3
    assert req.metadata == {"lead": "42", plan.EVAL_METADATA_KEY: "sales-smoke/0/0/1"}
    assert req.retell_llm_dynamic_variables == {"customer_name": "Ada"}


CALL = {
    "call_id": "call_1", "call_status": "ended", "disconnection_reason": "agent_hangup", "duration_ms": 42_000,
    "transcript": "Agent: Hi Ada\nUser: hello\n",
    "transcript_with_tool_calls": [{"role": "agent", "content": "Hi Ada"},
                                   {"role": "tool_call_invocation", "name": "book_demo", "arguments": "{}"}],
    "latency": {"e2e": {"p50": 900}}, "call_cost": {"combined_cost": 12.5},
    "call_analysis": {"call_successful": True, "in_voicemail": False, "user_sentiment": "Positive",
                      "custom_analysis_data": {"booked": True, "score": 1}},
}


def test_every_assertion_passes_on_a_matching_call_and_each_fails_alone():
    expect = load_text(GOOD, file="s.yaml").cases[0].expect
    checks = scoring.score(expect, CALL)
    assert all(c.passed for c in checks), [c.message for c in checks if not c.passed]
    assert len(checks) == 10
    breakers = {
        "status": {"call_status": "not_connected"},
        "disconnection_reason": {"disconnection_reason": "dial_busy"},
        "call_successful": {"call_analysis": {**CALL["call_analysis"], "call_successful": False}},
        "in_voicemail": {"call_analysis": {**CALL["call_analysis"], "in_voicemail": True}},
        "transcript_contains[Ada]": {"transcript": "Agent: hi Bob"},
        "transcript_not_contains[I am an AI]": {"transcript": "Agent: Hi Ada, i am an ai"},
        "tool_called[book_demo]": {"transcript_with_tool_calls": []},
        "max_duration_s": {"duration_ms": 121_000},
        "max_latency_p50_ms": {"latency": {"e2e": {"p50": 1501}}},
        "custom_analysis[booked]": {"call_analysis": {**CALL["call_analysis"], "custom_analysis_data": {"booked": 1}}},
    }
    for name, change in breakers.items():
        failed = [c.name for c in scoring.score(expect, {**CALL, **change}) if not c.passed]
        assert failed == [name], (name, failed)


def test_missing_numbers_fail_rather_than_pass():
    expect = Expect(max_duration_s=10, max_latency_p50_ms=10, max_cost_cents=1)
    assert [c.passed for c in scoring.score(expect, {"call_id": "c"})] == [False, False, False]


def test_wilson_interval_known_values():
    low, high = stats.wilson(14, 15)
    assert math.isclose(low, 0.7018, abs_tol=1e-4) and math.isclose(high, 0.9881, abs_tol=1e-4)
    assert stats.wilson(0, 10)[0] == 0.0 and math.isclose(stats.wilson(0, 10)[1], 0.2775, abs_tol=1e-4)
    assert stats.rate(0, 0).rate is None


@pytest.mark.parametrize(("table", "p"), [
    ((14, 1, 9, 6), 0.08008),  # R: fisher.test(matrix(c(14,9,1,6),2))
    ((3, 1, 1, 3), 0.48571),
    ((10, 0, 0, 10), 1.0825e-05),
    ((5, 5, 5, 5), 1.0),
    ((12, 0, 6, 6), 0.01373),
])
def test_fisher_exact_two_sided_matches_r(table, p):
    assert math.isclose(stats.fisher_exact(*table), p, rel_tol=1e-3)


def test_verdicts_say_better_not_enough_runs_or_no_difference():
    v = stats.compare("version 2", 5, 15, "version 3", 14, 15)
    assert v.verdict.startswith("version 3 is better: version 3 passes 14/15, version 2 5/15, p = ") and v.p_value < 0.05
    small = stats.compare("v2", 0, 2, "v3", 2, 2)
    assert small.verdict.startswith("not enough runs to tell") and not small.enough_runs
    chance = stats.compare("v2", 9, 15, "v3", 12, 15)
    assert chance.verdict.startswith("not enough runs to tell") and chance.enough_runs
    assert stats.compare("a", 5, 10, "b", 5, 10).verdict.startswith("no difference")
    assert stats.compare("a", 0, 0, "b", 1, 1).verdict.startswith("not enough runs to tell")


def test_summary_marks_flaky_cases_and_counts_reasons():
    suite = load_text(GOOD.replace("repeat: 3", "repeat: 2"), file="s.yaml")
    items = plan.expand(suite)
    bad_call = {**CALL, "call_status": "not_connected"}
    results = [item_result(items[0], CALL), item_result(items[2], bad_call),  # v2: pass then fail -> flaky
               item_result(items[1], CALL), item_result(items[3], None, refusal_code="budget_exceeded")]
    s = summarize(suite, results, total=len(items))
    assert s.passed == 2 and s.failed == 2 and s.refused == 1 and s.flaky_cases == ["books a demo"]
    assert [v.flaky for v in s.cases[0].by_variant] == [True, False]  # v3 never passed-and-failed: refused only
    assert s.cases[0].failures[0].startswith("status: expected ended")
    assert not s.ok and len(s.comparisons) == 1
