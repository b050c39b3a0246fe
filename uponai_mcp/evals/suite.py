"""The suite file: cases x repeats x variants, validated strictly with every problem located (file, case, key).

A suite is YAML or JSON. Unknown keys and wrong types are errors, never ignored or coerced: an evaluation that
silently skipped `transcript_contians` would pass for the wrong reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_ITEMS = 100_000
_STRICT = ConfigDict(extra="forbid", strict=True)


class Expect(BaseModel):
    """Assertions on the analyzed call; every one given must hold for the case to pass."""

    model_config = _STRICT
    status: str | list[str] | None = None  # call_status
    disconnection_reason: str | list[str] | None = None
    call_successful: bool | None = None  # call_analysis.call_successful
    in_voicemail: bool | None = None  # call_analysis.in_voicemail
    user_sentiment: str | list[str] | None = None  # call_analysis.user_sentiment
    transcript_contains: list[str] | None = None  # case-insensitive substrings
    transcript_not_contains: list[str] | None = None
    tool_called: list[str] | None = None  # tool_call_invocation names in transcript_with_tool_calls
    tool_not_called: list[str] | None = None
    max_duration_s: float | None = Field(None, ge=0)
    max_latency_p50_ms: float | None = Field(None, ge=0)  # latency.e2e.p50
    max_cost_cents: float | None = Field(None, ge=0)  # call_cost.combined_cost
    custom_analysis: dict[str, Any] | None = None  # call_analysis.custom_analysis_data, key by key


class Variant(BaseModel):
    """One agent (and version) every case runs with; `name` labels it in reports."""

    model_config = _STRICT
    agent_id: str = Field(min_length=1, max_length=128)
    version: int | None = Field(None, ge=0)
    name: str | None = Field(None, min_length=1, max_length=100)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return self.agent_id if self.version is None else f"{self.agent_id} v{self.version}"


class Case(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1, max_length=200)
    to_number: str = Field(min_length=1, max_length=64)
    dynamic_variables: dict[str, str] | None = None
    metadata: dict[str, Any] | None = None
    repeat: int | None = Field(None, ge=1, le=1000)  # overrides the suite's repeat for this case
    expect: Expect = Field(default_factory=Expect)


class Suite(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1, max_length=200)
    from_number: str = Field(min_length=1, max_length=64)
    repeat: int = Field(1, ge=1, le=1000)
    timeout_s: float = Field(600, gt=0, le=86_400)  # how long one call may take to be analyzed
    variants: list[Variant] | None = Field(None, min_length=1, max_length=10)
    cases: list[Case] = Field(min_length=1, max_length=10_000)

    @field_validator("cases")
    @classmethod
    def _unique_names(cls, cases: list[Case]) -> list[Case]:
        seen: set[str] = set()
        for case in cases:
            if case.name in seen:
                raise ValueError(f"two cases are named {case.name!r}; case names must be unique")
            seen.add(case.name)
        return cases

    def variant_list(self) -> list[Variant | None]:
        """None = the from-number's own outbound agent."""
        return list(self.variants) if self.variants else [None]

    def repeats(self, case: Case, override: int | None = None) -> int:
        return override if override is not None else (case.repeat or self.repeat)

    def item_count(self, repeat: int | None = None) -> int:
        return sum(self.repeats(c, repeat) for c in self.cases) * len(self.variant_list())


class Problem(BaseModel):
    """One thing wrong with a suite, located: file, case (by name when it has one) and key path."""

    file: str
    case: str | None = None
    key: str
    message: str

    def __str__(self) -> str:
        where = self.file + (f", case {self.case!r}" if self.case else "")
        return f"{where}, {self.key}: {self.message}"


class SuiteInvalid(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


def load_text(text: str, *, file: str = "<suite>") -> Suite:
    """Parse YAML or JSON text (JSON is YAML) into a Suite; raises SuiteInvalid with every problem."""
    import yaml

    try:
        data = json.loads(text) if file.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise SuiteInvalid([Problem(file=file, key="(file)", message=f"not valid YAML or JSON: {exc}")]) from None
    return from_data(data, file=file)


def load_file(path: str | Path) -> Suite:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteInvalid([Problem(file=str(path), key="(file)", message=f"cannot read it: {exc}")]) from None
    return load_text(text, file=str(path))


def from_data(data: Any, *, file: str = "<suite>") -> Suite:
    if not isinstance(data, dict):
        raise SuiteInvalid([Problem(file=file, key="(top level)", message="must be a mapping with name, "
                                    "from_number and cases")])
    try:
        return Suite.model_validate(data)
    except ValidationError as exc:
        raise SuiteInvalid(dedupe([_problem(file, data, err) for err in exc.errors()])) from None


def _problem(file: str, data: dict[str, Any], err: Any) -> Problem:
    loc = list(err["loc"])
    case = None
    if len(loc) >= 2 and loc[0] == "cases" and isinstance(loc[1], int):
        raw = (data.get("cases") or [None] * (loc[1] + 1))[loc[1]] if isinstance(data.get("cases"), list) else None
        name = raw.get("name") if isinstance(raw, dict) else None
        case = name if isinstance(name, str) else f"#{loc[1] + 1}"
        loc = loc[2:]
    # Unions add the member type to the path (e.g. "str", "list[str]"); a person wants the key.
    key = ".".join(str(p) for p in loc if not (isinstance(p, str) and ("[" in p or p in {"str", "int", "bool",
                                                                                        "float", "dict"})))
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        message = "unknown key (check its spelling against the README's suite reference)"
    elif err["type"] == "missing":
        message = "required key is missing"
    elif "string" in message and isinstance(err.get("input"), int | float) and "number" in key:
        message += " (quote phone numbers in YAML: \"+14155550100\")"
    return Problem(file=file, case=case, key=key or "(top level)", message=message)


def dedupe(problems: list[Problem]) -> list[Problem]:
    """Union members each report the same wrong value; keep one line per (case, key)."""
    seen: dict[tuple[str | None, str], Problem] = {}
    for p in problems:
        seen.setdefault((p.case, p.key), p)
    return list(seen.values())
