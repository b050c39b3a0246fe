"""Which destination countries a from-number may call.

Decided by the ISO region of the destination (phonenumbers' region_code_for_number), never by its
country code: +1 876 is Jamaica and +44 7911 is Guernsey, and both are classic one-ring/IRSF targets
that a "+1"/"+44" prefix check would let through.

Three layers, each can only narrow:
1. provider: Twilio-bought numbers reach the 15 platform countries, Telnyx-bought ones only US/IN/CA
   (intersected with the platform list, so narrowing the platform list narrows Telnyx too), imported
   numbers the operator's UPONAI_IMPORTED_COUNTRIES allowlist;
2. operator: UPONAI_ALLOWED_COUNTRIES, when set (an empty set allows nothing: fail closed);
3. carrier: the number's `allowed_outbound_country_list`; per the platform, None or [] means no restriction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from uponai_mcp.models import ProviderKind

from .destination import Destination
from .refusal import DESTINATION_NOT_ALLOWED, Refusal

if TYPE_CHECKING:
    from uponai_mcp.config import Settings

TELNYX_COUNTRIES: frozenset[str] = frozenset({"US", "IN", "CA"})


def _codes(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v.strip().upper() for v in values if v and v.strip())


@dataclass(frozen=True)
class CountryPolicy:
    platform_countries: frozenset[str]
    imported_countries: frozenset[str]
    operator_allowed: frozenset[str] | None = None
    telnyx_countries: frozenset[str] = TELNYX_COUNTRIES

    def __post_init__(self) -> None:
        # Accept any iterable of codes in any case; store upper-case frozensets.
        object.__setattr__(self, "platform_countries", _codes(self.platform_countries))
        object.__setattr__(self, "imported_countries", _codes(self.imported_countries))
        object.__setattr__(self, "telnyx_countries", _codes(self.telnyx_countries))
        if self.operator_allowed is not None:
            object.__setattr__(self, "operator_allowed", _codes(self.operator_allowed))

    @classmethod
    def from_settings(cls, settings: Settings) -> CountryPolicy:
        return cls(
            platform_countries=frozenset(settings.platform_countries),
            imported_countries=frozenset(settings.imported_countries),
            operator_allowed=None if settings.allowed_countries is None else frozenset(settings.allowed_countries),
        )

    def provider_countries(self, kind: ProviderKind) -> frozenset[str]:
        if kind is ProviderKind.TELNYX:
            return self.telnyx_countries & self.platform_countries
        if kind is ProviderKind.TWILIO:
            return self.platform_countries
        return self.imported_countries

    def allowed_for(self, kind: ProviderKind, carrier_list: list[str] | None = None) -> frozenset[str]:
        allowed = self.provider_countries(kind)
        if self.operator_allowed is not None:
            allowed &= self.operator_allowed
        carrier = _codes(carrier_list or ())
        if carrier:
            allowed &= carrier
        return allowed


_KIND_LABEL = {
    ProviderKind.TWILIO: "platform-bought (Twilio)",
    ProviderKind.TELNYX: "platform-bought (Telnyx)",
    ProviderKind.CUSTOM: "imported (custom telephony)",
}


def _list(codes: Iterable[str]) -> str:
    items = sorted(codes)
    return ", ".join(items) if items else "none"


def check_country(
    dest: Destination,
    kind: ProviderKind,
    policy: CountryPolicy,
    carrier_list: list[str] | None = None,
    *,
    from_number: str | None = None,
) -> Refusal | None:
    """None when `kind` numbers (and this number's carrier list) may call dest.region; else the refusal."""
    region = dest.region
    if region in policy.allowed_for(kind, carrier_list):
        return None
    place = f"{dest.e164} is in {dest.country_name or region} ({region})"
    label = _KIND_LABEL[kind]
    provider = policy.provider_countries(kind)
    carrier = _codes(carrier_list or ())
    if region not in provider:
        limited_by = "provider"
        if kind is ProviderKind.CUSTOM:
            action = (f"{label} numbers may only call {_list(provider)} here: ask the operator to add {region} "
                      "to UPONAI_IMPORTED_COUNTRIES if the carrier allows it")
        elif kind is ProviderKind.TELNYX and region in policy.platform_countries:
            action = (f"{label} numbers can only call {_list(provider)}: use a Twilio-bought number or an "
                      f"imported number whose carrier reaches {region}")
        else:
            action = (f"{label} numbers can only call {_list(provider)}: use an imported number whose carrier "
                      f"reaches {region}, if the operator allows it")
    elif policy.operator_allowed is not None and region not in policy.operator_allowed:
        limited_by = "operator"
        action = (f"the operator allows only {_list(policy.operator_allowed)} (UPONAI_ALLOWED_COUNTRIES): ask "
                  f"the operator to add {region}")
    else:
        limited_by = "carrier"
        who = f"from-number {from_number}" if from_number else "this from-number"
        action = (f"{who} may only call {_list(carrier)} (its allowed_outbound_country_list): use another "
                  f"from-number or add {region} to that number's allowed countries")
    return Refusal(
        DESTINATION_NOT_ALLOWED,
        f"{place}, and {action}.",
        {
            "reason": "country",
            "region": region,
            "country_code": dest.country_code,
            "kind": kind.value,
            "limited_by": limited_by,
            "allowed": sorted(policy.allowed_for(kind, carrier_list)),
        },
    )
