"""Pydantic schemas shared by the tools, the client and the sandbox.

Canonical shapes are the Retell-shaped ones the UponAI guides and webhooks use (snake_case);
the `uponai` native dialect is mapped to and from them in `api/dialects.py`.
Field descriptions are written for the model that reads them in a tool schema.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# --- open enums --------------------------------------------------------------------------------
# The platform adds values over time; known ones are listed, unknown ones pass through as strings.


class CallStatus(StrEnum):
    REGISTERED = "registered"
    NOT_CONNECTED = "not_connected"
    ONGOING = "ongoing"
    ENDED = "ended"
    ERROR = "error"


TERMINAL_STATUSES = frozenset({CallStatus.NOT_CONNECTED, CallStatus.ENDED, CallStatus.ERROR})


class DisconnectionReason(StrEnum):
    USER_HANGUP = "user_hangup"
    AGENT_HANGUP = "agent_hangup"
    CALL_TRANSFER = "call_transfer"
    VOICEMAIL_REACHED = "voicemail_reached"
    IVR_REACHED = "ivr_reached"
    INACTIVITY = "inactivity"
    MAX_DURATION_REACHED = "max_duration_reached"
    DIAL_BUSY = "dial_busy"
    DIAL_FAILED = "dial_failed"
    DIAL_NO_ANSWER = "dial_no_answer"
    INVALID_DESTINATION = "invalid_destination"
    TELEPHONY_PROVIDER_PERMISSION_DENIED = "telephony_provider_permission_denied"
    TELEPHONY_PROVIDER_UNAVAILABLE = "telephony_provider_unavailable"
    SIP_ROUTING_ERROR = "sip_routing_error"
    MARKED_AS_SPAM = "marked_as_spam"
    USER_DECLINED = "user_declined"
    CONCURRENCY_LIMIT_REACHED = "concurrency_limit_reached"
    NO_CONCURRENCY_FALLBACK = "no_concurrency_fallback"
    NO_VALID_PAYMENT = "no_valid_payment"
    SCAM_DETECTED = "scam_detected"
    ERROR_LLM_WEBSOCKET_OPEN = "error_llm_websocket_open"
    ERROR_LLM_WEBSOCKET_LOST_CONNECTION = "error_llm_websocket_lost_connection"
    ERROR_LLM_WEBSOCKET_RUNTIME = "error_llm_websocket_runtime"
    ERROR_LLM_WEBSOCKET_CORRUPT_PAYLOAD = "error_llm_websocket_corrupt_payload"
    ERROR_NO_AUDIO_RECEIVED = "error_no_audio_received"
    ERROR_ASR = "error_asr"
    ERROR_RETELL = "error_retell"
    ERROR_UNKNOWN = "error_unknown"
    ERROR_USER_NOT_JOINED = "error_user_not_joined"
    REGISTERED_CALL_TIMEOUT = "registered_call_timeout"
    TRANSFER_BRIDGED = "transfer_bridged"
    TRANSFER_CANCELLED = "transfer_cancelled"
    MANUAL_STOPPED = "manual_stopped"
    CALL_TAKE_OVER = "call_take_over"


class CallEventType(StrEnum):
    CALL_STARTED = "call_started"
    CALL_ENDED = "call_ended"
    CALL_ANALYZED = "call_analyzed"
    CALL_FAILED = "call_failed"


class ProviderKind(StrEnum):
    """Who carries a number's calls; decides the CPS scope and the country policy."""

    TWILIO = "twilio"  # bought on the platform, carried by Twilio
    TELNYX = "telnyx"  # bought on the platform, carried by Telnyx
    CUSTOM = "custom"  # imported: custom telephony / SIP trunk, the carrier's rules apply

    @property
    def platform_bought(self) -> bool:
        return self is not ProviderKind.CUSTOM

    @classmethod
    def from_wire(cls, value: str | None) -> ProviderKind:
        """Map Retell's `phone_number_type` (retell-twilio | retell-telnyx | custom) and kin."""
        v = (value or "").lower()
        if "telnyx" in v:
            return cls.TELNYX
        if "twilio" in v:
            return cls.TWILIO
        return cls.CUSTOM

    def to_wire(self) -> str:
        return {"twilio": "retell-twilio", "telnyx": "retell-telnyx", "custom": "custom"}[self.value]


OpenCallStatus = Annotated[
    CallStatus | str,
    Field(description="registered | not_connected | ongoing | ended | error; other values may appear."),
]
OpenDisconnectionReason = Annotated[
    DisconnectionReason | str,
    Field(description="Why the call ended, e.g. user_hangup, agent_hangup, voicemail_reached, dial_busy, "
          "dial_no_answer, dial_failed, invalid_destination, concurrency_limit_reached; other values may appear."),
]

# --- the documented call parameters -------------------------------------------------------------

MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last instant a datetime can hold
SIP_HEADER_NAME = re.compile(r"X-[A-Za-z0-9][A-Za-z0-9-]{0,62}")
MAX_METADATA_BYTES = 50_000


# Field names the platform documents for each part of agent_override (uponai-api.md 2.4). The schema keeps
# these objects open (listing ~60 fields would cost every model a kilobyte of tokens); validation closes them,
# so a misspelt field is refused instead of being silently ignored by the platform.
AGENT_OVERRIDE_FIELDS: dict[str, frozenset[str]] = {
    "agent": frozenset("""
        agent_name voice_id voice_model fallback_voice_ids voice_speed voice_temperature volume voice_emotion
        language responsiveness interruption_sensitivity enable_backchannel backchannel_frequency
        backchannel_words enable_dynamic_responsiveness enable_dynamic_voice_speed ambient_sound
        ambient_sound_volume denoising_mode stt_mode custom_stt_config vocab_specialization boosted_keywords
        pronunciation_dictionary begin_message_delay_ms end_call_after_silence_ms max_call_duration_ms
        ring_duration_ms reminder_trigger_ms reminder_max_count voicemail_option ivr_option
        call_screening_option allow_user_dtmf user_dtmf_options post_call_analysis_data
        post_call_analysis_model data_storage_setting data_storage_retention_days pii_config guardrail_config
        handbook_config opt_in_signed_url signed_url_expiration_ms timezone webhook_url webhook_events
        webhook_timeout_ms response_engine""".split()),
    "retell_llm": frozenset("""
        model s2s_model model_temperature model_high_priority tool_call_strict_mode knowledge_base_ids kb_config
        start_speaker begin_after_user_silence_ms begin_message""".split()),
    "conversation_flow": frozenset("""
        model_choice model_temperature tool_call_strict_mode knowledge_base_ids kb_config start_speaker
        begin_after_user_silence_ms begin_message""".split()),
}


class AgentOverride(BaseModel):
    """Partial overrides of the agent for this one call; nothing is saved to the agent."""

    model_config = ConfigDict(extra="forbid")
    agent: dict[str, Any] | None = Field(
        None, description="Agent fields, e.g. {voice_id, language, max_call_duration_ms (60000-7200000)}.")
    retell_llm: dict[str, Any] | None = Field(
        None, description="LLM fields, e.g. {model, begin_message, start_speaker: user|agent}.")
    conversation_flow: dict[str, Any] | None = Field(
        None, description="Flow fields, e.g. {start_speaker, model_temperature}.")

    @model_validator(mode="after")
    def _documented_fields(self) -> AgentOverride:
        for part, known in AGENT_OVERRIDE_FIELDS.items():
            unknown = sorted(set(getattr(self, part) or {}) - known)
            if unknown:
                raise ValueError(f"agent_override.{part} has no field {', '.join(unknown)} (documented fields "
                                 f"include {', '.join(sorted(known)[:6])}, ...)")
        limits = {"max_call_duration_ms": (60_000, 7_200_000)}
        for name, (low, high) in limits.items():
            value = (self.agent or {}).get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not low <= value <= high):
                raise ValueError(f"agent_override.agent.{name} must be an integer from {low} to {high}")
        for part in ("retell_llm", "conversation_flow"):
            speaker = (getattr(self, part) or {}).get("start_speaker")
            if speaker is not None and speaker not in ("user", "agent"):
                raise ValueError(f"agent_override.{part}.start_speaker must be user or agent")
        return self


# Metadata key tagging a call with the attempt that created it; its value is "att_" + 32 hex digits. The
# metadata limit counts it, so the platform never refuses metadata this server accepted.
ATTEMPT_KEY = "uponai_attempt_id"
_TAG_PLACEHOLDER = "att_" + "0" * 32


def metadata_size(metadata: dict[str, Any]) -> int:
    """Size as the platform measures it, with the attempt tag the server adds."""
    import json

    return len(json.dumps({**metadata, ATTEMPT_KEY: _TAG_PLACEHOLDER}, default=str))


class CallRequest(BaseModel):
    """The documented parameters of an outbound phone call (the UponAI outbound-call guide)."""

    model_config = ConfigDict(extra="forbid")
    from_number: str = Field(
        description="Caller ID: this account's E.164 number with an outbound agent (or use override_agent_id).",
        min_length=1, max_length=64,
    )
    to_number: str = Field(
        description="Number to call, E.164 (e.g. +14155552671).",
        min_length=1, max_length=64,
    )
    override_agent_id: str | None = Field(
        None, max_length=128,
        description="Agent for this call instead of the number's outbound agent.",
    )
    override_agent_version: int | None = Field(
        None, ge=0, description="Agent version; latest when omitted."
    )
    agent_override: AgentOverride | None = Field(
        None, description="Overrides for this call only."
    )
    metadata: dict[str, Any] | None = Field(
        None, description="Your data, echoed in webhooks (max 50 kB)."
    )
    retell_llm_dynamic_variables: dict[str, str] | None = Field(
        None, description="String values for {{placeholders}} in the agent's prompt.",
    )
    custom_sip_headers: dict[str, str] | None = Field(
        None, description="Extra SIP headers; names start with 'X-'."
    )
    ignore_e164_validation: bool = Field(
        False, description="Skip E.164 checks of from_number (custom telephony only)."
    )

    @field_validator("custom_sip_headers")
    @classmethod
    def _sip_header_names(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        for name, value in (v or {}).items():
            if not SIP_HEADER_NAME.fullmatch(name):
                raise ValueError(f"SIP header name {name!r} must start with 'X-' and hold only letters, digits, '-'")
            if any(c in value for c in "\r\n\x00"):
                raise ValueError(f"SIP header {name!r} value must not contain line breaks or NUL")
        return v

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None and metadata_size(v) > MAX_METADATA_BYTES:
            raise ValueError("metadata must be at most 50 kB of JSON, counting the 60-byte attempt tag the server "
                             "adds")
        return v


# --- the call object ----------------------------------------------------------------------------


class _Open(BaseModel):
    """Platform objects: unknown fields are kept, so newer platform fields survive a round trip."""

    model_config = ConfigDict(extra="allow")


class Word(_Open):
    word: str
    start: float | None = None
    end: float | None = None


class Utterance(_Open):
    role: str = Field(description="agent | user | transfer_target")
    content: str = ""
    words: list[Word] = Field(default_factory=list)


class ToolCallInvocation(_Open):
    tool_call_id: str
    name: str
    arguments: str = ""


class ToolCallResult(_Open):
    tool_call_id: str
    content: str = ""
    successful: bool | None = None


class TranscriptEntry(_Open):
    """One entry of `transcript_with_tool_calls`: an utterance, a tool call or a tool result."""

    role: str = Field(description="agent | user | tool_call_invocation | tool_call_result | dtmf | ...")
    content: str | None = None
    tool_call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    successful: bool | None = None


class LatencyStats(_Open):
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    min: float | None = None
    num: int | None = None
    values: list[float] = Field(default_factory=list)


class Latency(_Open):
    e2e: LatencyStats | None = None
    asr: LatencyStats | None = None
    llm: LatencyStats | None = None
    llm_websocket_network_rtt: LatencyStats | None = None
    tts: LatencyStats | None = None
    knowledge_base: LatencyStats | None = None
    s2s: LatencyStats | None = None


class CallAnalysis(_Open):
    call_summary: str | None = None
    call_successful: bool | None = None
    user_sentiment: str | None = Field(None, description="Negative | Positive | Neutral | Unknown")
    in_voicemail: bool | None = None
    custom_analysis_data: dict[str, Any] | None = None


class ProductCost(_Open):
    product: str
    cost: float
    unit_price: float | None = None


class CallCost(_Open):
    combined_cost: float | None = Field(None, description="Total cost in cents.")
    product_costs: list[ProductCost] = Field(default_factory=list)
    total_duration_seconds: float | None = None
    total_duration_unit_price: float | None = None


class Call(_Open):
    """A phone call as the platform reports it (Retell-shaped; webhooks carry the same object)."""

    call_id: str
    call_type: str = "phone_call"
    agent_id: str | None = None
    agent_version: int | None = None
    agent_name: str | None = None
    call_status: OpenCallStatus = CallStatus.REGISTERED
    direction: str | None = "outbound"
    from_number: str | None = None
    to_number: str | None = None
    start_timestamp: int | None = Field(None, description="When the call connected, ms since epoch.")
    end_timestamp: int | None = Field(None, description="When the call ended, ms since epoch.")
    duration_ms: int | None = None
    disconnection_reason: OpenDisconnectionReason | None = None
    transcript: str | None = None
    transcript_object: list[Utterance] | None = None
    transcript_with_tool_calls: list[TranscriptEntry] | None = None
    recording_url: str | None = None
    recording_multi_channel_url: str | None = None
    public_log_url: str | None = None
    latency: Latency | None = None
    call_analysis: CallAnalysis | None = None
    call_cost: CallCost | None = None
    metadata: dict[str, Any] | None = None
    retell_llm_dynamic_variables: dict[str, Any] | None = None
    collected_dynamic_variables: dict[str, Any] | None = None
    custom_sip_headers: dict[str, str] | None = None
    telephony_identifier: dict[str, Any] | None = None

    @property
    def is_terminal(self) -> bool:
        return self.call_status in TERMINAL_STATUSES


class CallFilter(BaseModel):
    """Filters for listing calls; all given filters must match."""

    model_config = ConfigDict(extra="forbid")
    agent_id: str | None = Field(None, description="Only calls handled by this agent.")
    call_status: OpenCallStatus | None = Field(None, description="Only calls in this status.")
    from_number: str | None = Field(None, description="Only calls from this number (E.164).")
    to_number: str | None = Field(None, description="Only calls to this number (E.164).")
    start_after_ms: int | None = Field(None, ge=0, le=MAX_EPOCH_MS,
                                       description="Only calls started at or after this time (ms).")
    start_before_ms: int | None = Field(None, ge=0, le=MAX_EPOCH_MS,
                                        description="Only calls started at or before this time (ms).")
    metadata: dict[str, str] | None = Field(None, description="Only calls whose metadata has these key/values.")
    limit: int = Field(20, ge=1, le=100, description="Calls per page.")
    page_token: str | None = Field(None, description="next_page_token from a previous page.")


class CallPage(BaseModel):
    calls: list[Call]
    next_page_token: str | None = Field(None, description="Pass as page_token to get the next page.")


# --- phone numbers, agents, concurrency ---------------------------------------------------------


class WeightedAgent(BaseModel):
    """An agent and its share of calls."""

    model_config = ConfigDict(extra="ignore")
    agent_id: str = Field(min_length=1, max_length=128)
    agent_version: int | None = Field(None, ge=0)
    weight: float = Field(1.0, gt=0, le=1, description="Share of calls; a list sums to 1.")


WEIGHT_TOLERANCE = 1e-6


def check_weights(agents: list[WeightedAgent] | None, direction: str) -> None:
    """Raise ValueError unless a non-empty agent list has distinct agents whose weights sum to 1."""
    if not agents:
        return
    total = sum(a.weight for a in agents)
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        raise ValueError(f"{direction} agent weights must sum to 1, got {total:g}")
    keys = [(a.agent_id, a.agent_version) for a in agents]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{direction} agents list the same agent and version twice")


class PhoneNumber(BaseModel):
    """A number of the account with its provider and its inbound/outbound agent bindings."""

    model_config = ConfigDict(extra="ignore")
    phone_number: str = Field(description="The number, E.164 (or a SIP user for custom telephony).")
    kind: ProviderKind = Field(description="twilio / telnyx (bought on the platform) or custom (imported).")
    nickname: str | None = None
    inbound_agents: list[WeightedAgent] = Field(
        default_factory=list, description="Agents answering inbound calls; empty = inbound disabled."
    )
    outbound_agents: list[WeightedAgent] = Field(
        default_factory=list, description="Agents placing outbound calls; empty = needs override_agent_id."
    )
    allowed_outbound_country_list: list[str] | None = Field(
        None, description="Carrier-side destination countries (ISO alpha-2) if the platform reports them."
    )
    last_modification_timestamp: int | None = None


class BindingUpdate(BaseModel):
    """Change a number's bindings. None leaves a direction as it is; [] unsets it."""

    model_config = ConfigDict(extra="forbid")
    inbound_agents: list[WeightedAgent] | None = None
    outbound_agents: list[WeightedAgent] | None = None

    @model_validator(mode="after")
    def _weights(self) -> BindingUpdate:
        check_weights(self.inbound_agents, "inbound")
        check_weights(self.outbound_agents, "outbound")
        return self


class Agent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    agent_id: str
    agent_name: str | None = None
    version: int | None = Field(None, description="The version this record describes (latest when listed).")
    versions: list[int] = Field(default_factory=list, description="Known versions of the agent.")
    is_published: bool | None = None
    voice_id: str | None = None
    language: str | None = None
    begin_message: str | None = None


class Concurrency(BaseModel):
    model_config = ConfigDict(extra="ignore")
    current_concurrency: int = Field(description="Calls in progress now.")
    concurrency_limit: int = Field(description="Most calls allowed at once.")
    base_concurrency: int | None = None
    purchased_concurrency: int | None = None
    concurrency_purchase_limit: int | None = None
    concurrency_burst_limit: int | None = None


# --- webhooks -----------------------------------------------------------------------------------


class WebhookEvent(BaseModel):
    """A platform webhook: `{"event": ..., "call": {...}}`. Unknown event names are kept as strings."""

    model_config = ConfigDict(extra="allow")
    event: CallEventType | str
    call: Call
