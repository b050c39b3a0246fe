"""The platform's rules for a new outbound call, as pure checks (no state): each failure is a 400."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import phonenumbers
from pydantic import ValidationError

from uponai_mcp.models import (
    MAX_METADATA_BYTES,
    SIP_HEADER_NAME,
    AgentOverride,
    ProviderKind,
    WeightedAgent,
    check_weights,
)

from .errors import ApiError
from .parsing import is_int, opt_bool, opt_obj, opt_str, req_str

OUTCOMES = ("answered", "voicemail", "busy", "no_answer", "failed", "invalid_destination", "long_call")
# Last digit of the destination -> outcome; most ordinary numbers are answered.
OUTCOME_BY_LAST_DIGIT = {
    "0": "answered", "1": "answered", "2": "answered", "3": "answered",
    "4": "voicemail", "5": "busy", "6": "no_answer", "7": "failed",
    "8": "invalid_destination", "9": "long_call",
}
# Destinations reachable from numbers bought on the platform (Retell's international-call table).
PLATFORM_COUNTRIES = {
    ProviderKind.TWILIO: ("US", "IN", "AU", "DE", "ES", "GB", "MX", "FR", "JP", "CA", "IT", "ID", "PH", "MY", "TH"),
    ProviderKind.TELNYX: ("US", "IN", "CA"),
}
E164 = re.compile(r"\+[1-9]\d{6,14}")


@dataclass
class CreateSpec:
    """A create-call request after shape validation, in Retell's vocabulary (both dialects map here)."""

    from_number: str
    to_number: str
    override_agent_id: str | None = None
    override_agent_version: int | None = None
    agent_override: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    dynamic_variables: dict[str, str] | None = None
    custom_sip_headers: dict[str, str] | None = None
    ignore_e164_validation: bool = False
    idempotency_key: str | None = None


def parse_common(body: dict[str, Any], names: dict[str, str]) -> CreateSpec:
    """Validate the fields both dialects share; `names` maps Retell field names to this dialect's."""
    n = names
    spec = CreateSpec(
        from_number=req_str(body, n["from_number"], max_len=64),
        to_number=req_str(body, n["to_number"], max_len=64),
        metadata=check_metadata(opt_obj(body, n["metadata"]), n["metadata"]),
        dynamic_variables=check_dynamic_variables(body.get(n["retell_llm_dynamic_variables"]),
                                                  n["retell_llm_dynamic_variables"]),
        custom_sip_headers=check_sip_headers(body.get(n["custom_sip_headers"]), n["custom_sip_headers"]),
        ignore_e164_validation=bool(opt_bool(body, n["ignore_e164_validation"])),
    )
    spec.override_agent_version = check_version(body.get(n["override_agent_version"]), n["override_agent_version"])
    return spec


def check_version(v: Any, label: str) -> int | None:
    # Retell also takes the tags "latest" / "latest_published": both mean the newest version here.
    if v is None or v in ("latest", "latest_published"):
        return None
    if not is_int(v) or v < 0:
        raise ApiError(400, f"{label} must be a non-negative integer (or 'latest').")
    return v


def check_metadata(v: dict[str, Any] | None, label: str) -> dict[str, Any] | None:
    if v is None:
        return None
    if len(json.dumps(v, default=str)) > MAX_METADATA_BYTES:
        raise ApiError(400, f"{label} must be at most 50 kB of JSON.")
    outcome = v.get("sandbox_outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise ApiError(400, f"{label}.sandbox_outcome must be one of {', '.join(OUTCOMES)}; got {outcome!r}.")
    says = v.get("sandbox_user_says")
    if says is not None and not (isinstance(says, str) or (isinstance(says, list) and all(
            isinstance(x, str) for x in says))):
        raise ApiError(400, f"{label}.sandbox_user_says must be a string or a list of strings.")
    return v


def user_says(spec: CreateSpec) -> list[str] | None:
    """The callee's scripted lines (metadata `sandbox_user_says`), or None."""
    says = (spec.metadata or {}).get("sandbox_user_says")
    return [says] if isinstance(says, str) else (list(says) if says else None)


def check_dynamic_variables(v: Any, label: str) -> dict[str, str] | None:
    if v is None:
        return None
    if not isinstance(v, dict):
        raise ApiError(400, f"{label} must be a JSON object of string values.")
    for key, value in v.items():
        if not isinstance(value, str):
            raise ApiError(400, f"{label}.{key} must be a string (dynamic variable values are strings), "
                                f"got {type(value).__name__}.")
    return v


def check_sip_headers(v: Any, label: str) -> dict[str, str] | None:
    if v is None:
        return None
    if not isinstance(v, dict):
        raise ApiError(400, f"{label} must be a JSON object of header name to string value.")
    for name, value in v.items():
        if not SIP_HEADER_NAME.fullmatch(name):
            raise ApiError(400, f"{label}: header name {name!r} must start with 'X-' (custom SIP headers are X- headers).")
        if not isinstance(value, str) or any(c in value for c in "\r\n\x00"):
            raise ApiError(400, f"{label}.{name} must be a string without line breaks.")
    return v


def check_agent_override(v: Any, label: str) -> dict[str, Any] | None:
    if v is None:
        return None
    if not isinstance(v, dict):
        raise ApiError(400, f"{label} must be a JSON object.")
    try:
        AgentOverride.model_validate(v)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ApiError(400, f"{label}.{where}: {err['msg']}.") from None
    return v


def check_idempotency_key(body: dict[str, Any]) -> str | None:
    return opt_str(body, "idempotency_key", max_len=256)


def check_from_format(number: str) -> None:
    if not E164.fullmatch(number):
        raise ApiError(400, f"from_number {number!r} is not a valid E.164 number (+ country code, then digits). "
                            "ignore_e164_validation is only allowed for custom telephony numbers.")


def check_to_number(number: str) -> str:
    """Return the destination's region (ISO alpha-2), or raise 400 if it is not a valid E.164 number."""
    if not E164.fullmatch(number):
        raise ApiError(400, f"to_number {number!r} is not in E.164 format (+ country code, then digits only).")
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is None or not phonenumbers.is_valid_number(parsed):
        raise ApiError(400, f"to_number {number} is not a valid phone number.")
    return phonenumbers.region_code_for_number(parsed) or "ZZ"


def check_country(kind: ProviderKind, region: str, to_number: str, from_number: str,
                  allowed: list[str] | None) -> None:
    platform = PLATFORM_COUNTRIES.get(kind)
    if platform is not None and region not in platform:
        raise ApiError(400, f"to_number {to_number} is in {region}; numbers bought on the platform "
                            f"({kind.to_wire()}) can only call {', '.join(platform)}. "
                            "Use an imported (custom telephony) number for other countries.")
    if allowed and region not in allowed:
        raise ApiError(400, f"to_number {to_number} is in {region}, which is not in the "
                            f"allowed_outbound_country_list of {from_number} ({', '.join(allowed)}).")


def outcome_for(spec: CreateSpec) -> str:
    chosen = (spec.metadata or {}).get("sandbox_outcome")
    if chosen:
        return chosen
    last = spec.to_number[-1:]
    return OUTCOME_BY_LAST_DIGIT.get(last, "answered")


def parse_weighted(raw: Any, label: str, direction: str) -> list[WeightedAgent] | None:
    """A weighted agent list of a binding update; None or [] means 'unset this direction'."""
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise ApiError(400, f"{label} must be a list of {{agent_id, agent_version?, weight}} or null.")
    items = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ApiError(400, f"{label}[{i}] must be an object {{agent_id, agent_version?, weight}}.")
        if "weight" not in item:
            raise ApiError(400, f"{label}[{i}].weight is required (weights of a list sum to 1).")
        item = dict(item)
        if item.get("agent_version") in ("latest", "latest_published"):
            item["agent_version"] = None
        try:
            items.append(WeightedAgent.model_validate(item))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ApiError(400, f"{label}[{i}].{where}: {err['msg']}.") from None
    try:
        check_weights(items, direction)
    except ValueError as exc:
        raise ApiError(400, f"{label}: {exc}.") from None
    return items or None
