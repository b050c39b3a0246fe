"""A suite expanded into items (case x repeat x variant), each with its call request and a key that is the
same in every process, so a resumed run finds the calls it already placed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from uponai_mcp.models import CallRequest

from .suite import Case, Suite, Variant

EVAL_METADATA_KEY = "uponai_eval"  # marks a call as an evaluation item (no run id: see `request_for`)


@dataclass(frozen=True)
class Item:
    case_idx: int
    repeat: int
    variant_idx: int
    case: Case
    variant: Variant | None
    request: CallRequest

    @property
    def key(self) -> str:
        return f"{self.case_idx}:{self.repeat}:{self.variant_idx}"

    @property
    def variant_label(self) -> str:
        return self.variant.label if self.variant is not None else "default agent"


def idempotency_key(run_id: str, item: Item) -> str:
    """The dialer's idempotency key for an item: a resumed run replays it instead of dialling again."""
    return f"eval:{run_id}:{item.key}"


def request_for(suite: Suite, case_idx: int, repeat: int, variant_idx: int, variant: Variant | None) -> CallRequest:
    case = suite.cases[case_idx]
    # The marker names the item, not the run: the same suite and seed give the same requests, so the sandbox's
    # per-version behaviour (seeded by the request) gives the same report in every run.
    metadata: dict[str, Any] = {**(case.metadata or {}),
                                EVAL_METADATA_KEY: f"{suite.name}/{case_idx}/{repeat}/{variant_idx}"}
    return CallRequest(
        from_number=suite.from_number, to_number=case.to_number, metadata=metadata,
        retell_llm_dynamic_variables=case.dynamic_variables,
        override_agent_id=variant.agent_id if variant is not None else None,
        override_agent_version=variant.version if variant is not None else None,
    )


def expand(suite: Suite, *, repeat: int | None = None) -> list[Item]:
    """Every item, in dial order: repeat-major, so a run stopped early has sampled every case and variant."""
    variants = suite.variant_list()
    most = max(suite.repeats(c, repeat) for c in suite.cases)
    items = []
    for r in range(most):
        for ci, case in enumerate(suite.cases):
            if r >= suite.repeats(case, repeat):
                continue
            for vi, variant in enumerate(variants):
                items.append(Item(ci, r, vi, case, variant, request_for(suite, ci, r, vi, variant)))
    return items
