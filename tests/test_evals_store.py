"""Evaluation runs in the store, on a real SQLite file and on a real PostgreSQL server (the same SQL)."""

from __future__ import annotations

import pytest

from uponai_mcp.store import Store
from uponai_mcp.store.evals import EvalRuns

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request, tmp_path):
    if request.param == "sqlite":
        return tmp_path / "store.db"
    return request.getfixturevalue("pg_url")


async def test_runs_results_and_call_progress(where):
    store = await Store.open(where)
    try:
        runs = EvalRuns(store)
        assert await runs.get("eval_none") is None and await runs.list() == []
        row = await runs.create("eval_a", name="smoke", suite={"name": "smoke", "cases": []},
                                options={"repeat": 2}, total=4, now_ms=1_000)
        assert (row.status, row.total, row.scored, row.passed, row.options) == ("running", 4, 0, 0, {"repeat": 2})
        await runs.save_result("eval_a", "0:0:0", call_id="call_1", passed=True, result={"key": "0:0:0"}, now_ms=2_000)
        await runs.save_result("eval_a", "0:1:0", call_id="call_2", passed=False, result={"key": "0:1:0"},
                               now_ms=2_001)
        await runs.save_result("eval_a", "0:1:0", call_id="call_2", passed=True, result={"key": "0:1:0", "v": 2},
                               now_ms=2_002)  # a resumed run re-scores the same call: last write wins
        assert await runs.results("eval_a") == {"0:0:0": {"key": "0:0:0"}, "0:1:0": {"key": "0:1:0", "v": 2}}
        await runs.set_status("eval_a", "completed", summary={"passed": 2}, now_ms=3_000)
        await runs.create("eval_b", name="later", suite={}, options={}, total=1, now_ms=5_000)
        got = await runs.get("eval_a")
        assert (got.status, got.scored, got.passed, got.summary) == ("completed", 2, 2, {"passed": 2})
        assert [r.run_id for r in await runs.list()] == ["eval_b", "eval_a"]
        with pytest.raises(ValueError):
            await runs.set_status("eval_a", "exploded")

        assert await runs.call_progress("call_1") is None
        call = {"call_id": "call_1", "call_status": "ended", "end_timestamp": 2_500}
        await store.ingest_event({"event": "call_ended", "call": call}, received_at_ms=2_600)
        assert await runs.call_progress("call_1") == ("ended", True, False)
        await store.ingest_event({"event": "call_analyzed", "call": {**call, "call_analysis": {"call_successful": True}}},
                                 received_at_ms=2_700)
        assert await runs.call_progress("call_1") == ("ended", True, True)
    finally:
        await store.close()
