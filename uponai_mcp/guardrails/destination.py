"""Is `to_number` a number we may dial at all? Strict E.164, valid range, not emergency, not a fraud-prone type.

Order, and why:
1. Emergency codes first, on a normalised copy of the input, so "911", "+1911", "+44 999" or "１１２" get
   the specific `emergency_number` answer (tell the person to dial it themselves) instead of a format error.
   This step can only refuse, never accept, so being lenient here is safe.
2. Strict ASCII regex on the raw string: phonenumbers itself happily parses full-width and Arabic-Indic
   digits, `tel:` URIs, zero-width spaces and vanity letters, which a model can smuggle through.
3. parse + exact E.164 round trip + no extension.
4. Non-geographic "001" country codes (+800 +808 +870 +878 +881 +882 +883 +888 +979) are blocked as a
   type, even when the range is invalid: satellite/global numbers are the classic toll-fraud targets.
5. Range validity (metadata based: valid is not the same as assigned).
6. Number type: premium, shared-cost, personal (UK +44 70), UAN, pager, voicemail and UNKNOWN are blocked.

`check_destination` never raises: any input, of any type, gives a Destination or a Refusal.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType, shortnumberinfo
from phonenumbers import timezone as pn_timezone

from .refusal import EMERGENCY_NUMBER, INVALID_NUMBER, NUMBER_TYPE_BLOCKED, Refusal
from .text import char_names, visible

# ASCII digits only: `\d` would also match full-width and Arabic-Indic digits in a str pattern.
STRICT_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
EXAMPLE = "+14155552671"

DEFAULT_BLOCKED_TYPES: frozenset[str] = frozenset({
    "PREMIUM_RATE", "SHARED_COST", "PERSONAL_NUMBER", "UAN", "PAGER", "VOICEMAIL", "UNKNOWN",
})
_TYPE_LABEL = {
    "PREMIUM_RATE": "premium-rate", "SHARED_COST": "shared-cost", "PERSONAL_NUMBER": "personal (follow-me)",
    "UAN": "universal access (UAN)", "PAGER": "pager", "VOICEMAIL": "voicemail-access", "UNKNOWN": "unclassified",
    "TOLL_FREE": "toll-free", "VOIP": "VoIP", "MOBILE": "mobile", "FIXED_LINE": "landline",
    "FIXED_LINE_OR_MOBILE": "landline or mobile",
}
NON_GEOGRAPHIC_REGION = "001"
UNKNOWN_ZONE = "Etc/Unknown"


@dataclass(frozen=True)
class Destination:
    """What we learned about a valid, dialable to_number.

    time_zones: candidate IANA zones of the number's prefix, `Etc/Unknown` dropped (empty = unknown).
    description: geocoder text, e.g. "San Francisco, CA", "Guernsey", or "" when unknown.
    """

    e164: str
    region: str
    country_code: int
    number_type: str
    time_zones: tuple[str, ...]
    description: str
    country_name: str = ""


def _geocoder():
    """phonenumbers.geocoder, imported on first use: it eagerly loads ~19 MB of generated data modules
    (seconds without a bytecode cache), which must not slow down server start or `tools/list`."""
    from phonenumbers import geocoder

    return geocoder


def warm_up() -> None:
    """Load the lazy data (geocoder, short-number metadata) ahead of the first call, e.g. in a thread at start."""
    _geocoder()
    _emergency_regions("112", _SHORT_REGIONS)


def is_strict_e164(s: object) -> bool:
    return isinstance(s, str) and STRICT_E164.fullmatch(s) is not None


def type_name(number: phonenumbers.PhoneNumber) -> str:
    return PhoneNumberType.to_string(phonenumbers.number_type(number)) or "UNKNOWN"


def check_destination(
    to_number: str, *, blocked_types: frozenset[str] = DEFAULT_BLOCKED_TYPES
) -> Destination | Refusal:
    """Destination for a strict, valid, callable E.164 number; otherwise the first Refusal (see module doc).
    Memoized: parsing costs about a millisecond, and a batch or an evaluation checks the same numbers again and
    again. A refusal is handed out as a copy (its details are a dict)."""
    if not isinstance(to_number, str) or not isinstance(blocked_types, frozenset):  # not hashable: no memo
        return _check_destination.__wrapped__(to_number, blocked_types)
    result = _check_destination(to_number, blocked_types)
    return result if isinstance(result, Destination) else Refusal(result.code, result.message, dict(result.details))


@functools.lru_cache(maxsize=8192)
def _check_destination(to_number: str, blocked_types: frozenset[str]) -> Destination | Refusal:
    if not isinstance(to_number, str):
        return Refusal(INVALID_NUMBER, "The destination number must be text in E.164 form, e.g. +14155552671.",
                       {"input": visible(to_number, quote=False), "problem": "not_text"})
    emergency = _emergency_refusal(to_number)
    if emergency is not None:
        return emergency
    if not STRICT_E164.fullmatch(to_number):
        return _malformed(to_number)
    try:
        number = phonenumbers.parse(to_number, None)
    except NumberParseException:
        return _invalid(to_number, "unknown_country_code",
                        f"'{to_number}' does not start with a known country code: check the digits after '+'.")
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    if e164 != to_number or number.extension:
        return _invalid(to_number, "not_canonical",
                        f"'{to_number}' is not in canonical E.164 form: write it as {e164}.", suggestion=e164)
    cc = number.country_code
    if phonenumbers.region_code_for_country_code(cc) == NON_GEOGRAPHIC_REGION:
        kind = type_name(number) if phonenumbers.is_valid_number(number) else "UNKNOWN"
        return Refusal(
            NUMBER_TYPE_BLOCKED,
            f"'{to_number}' is a non-geographic +{cc} number (satellite, global or international service), "
            "which is blocked because such ranges are used for toll fraud: call a regular number instead.",
            {"input": to_number, "region": NON_GEOGRAPHIC_REGION, "country_code": cc, "number_type": kind},
        )
    if not phonenumbers.is_valid_number(number):
        return _invalid(to_number, "invalid_range",
                        f"'{to_number}' is not a valid number for country code +{cc} (the range is unassigned or "
                        "reserved, e.g. for drama or testing): check the digits.", country_code=cc)
    region = phonenumbers.region_code_for_number(number) or ""
    kind = type_name(number)
    if kind in blocked_types:
        return Refusal(
            NUMBER_TYPE_BLOCKED,
            f"'{to_number}' is a {_TYPE_LABEL.get(kind, kind)} number in {region}, a type that is blocked "
            "because it can cost far more than a normal call or be used for toll fraud: call a regular "
            "mobile or landline number instead.",
            {"input": to_number, "region": region, "country_code": cc, "number_type": kind},
        )
    zones = tuple(z for z in pn_timezone.time_zones_for_number(number) if z != UNKNOWN_ZONE)
    geocoder = _geocoder()
    return Destination(
        e164=e164,
        region=region,
        country_code=cc,
        number_type=kind,
        time_zones=zones,
        description=geocoder.description_for_number(number, "en"),
        country_name=geocoder.country_name_for_number(number, "en"),
    )


# --- emergency numbers ----------------------------------------------------------------------------

_SEPARATORS = re.compile(r"[\s\-.()/]")
_MAX_SHORT_CODE = 8  # emergency codes are 2-6 digits; longer inputs are only checked by prefix
_SHORT_REGIONS = tuple(sorted(shortnumberinfo.SUPPORTED_SHORT_REGIONS))


def _normalise(s: str) -> str:
    """A lenient copy of the input, used only to recognise emergency codes (refusal-only)."""
    s = unicodedata.normalize("NFKC", s)
    s = "".join(
        str(unicodedata.decimal(c)) if c.isdecimal() else c
        for c in s
        if unicodedata.category(c) not in ("Cf", "Cc")
    )
    s = _SEPARATORS.sub("", s)
    return s[4:] if s[:4].lower() == "tel:" else s


def _emergency_refusal(raw: str) -> Refusal | None:
    if len(raw) > 64:  # nothing that long is a short code; keeps the lenient path cheap
        return None
    s = _normalise(raw)
    m = re.fullmatch(r"(\+?)([0-9]{1,15})", s)
    if m is None:
        return None
    plus, digits = m.groups()
    number = None
    if plus:
        try:
            number = phonenumbers.parse("+" + digits, None)
        except NumberParseException:
            number = None
    if len(digits) <= _MAX_SHORT_CODE:
        if number is not None:  # "+1911", "+44999": country code + the national emergency code
            nsn = phonenumbers.national_significant_number(number)
            regions = _emergency_regions(nsn, _regions_of(number.country_code))
            if regions:
                return _emergency(raw, nsn, regions, prefix_only=False)
        # "911", "112", "+112": a bare emergency code somewhere in the world
        regions = _emergency_regions(digits, _SHORT_REGIONS)
        if regions:
            return _emergency(raw, digits, regions, prefix_only=False)
    if number is not None and not phonenumbers.is_valid_number(number):
        # "+19115551234": not a real number, and a national dial plan could route it as 911.
        nsn = phonenumbers.national_significant_number(number)
        for end in range(2, min(len(nsn), 6) + 1):
            regions = _emergency_regions(nsn[:end], _regions_of(number.country_code))
            if regions:
                return _emergency(raw, nsn[:end], regions, prefix_only=True)
    return None


def _regions_of(country_code: int) -> tuple[str, ...]:
    # The main region first (US for +1, GB for +44), so messages name the obvious one.
    return phonenumbers.region_codes_for_country_code(country_code)


def _emergency_regions(code: str, regions) -> list[str]:
    return [r for r in regions if shortnumberinfo.is_emergency_number(code, r)]


def _emergency(raw: str, code: str, regions: list[str], *, prefix_only: bool) -> Refusal:
    where = regions[0] if len(regions) == 1 else f"{regions[0]} and {len(regions) - 1} other regions"
    if prefix_only:
        what = f"starts with the emergency number {code} ({where})"
    else:
        what = f"is an emergency number ({code} in {where})"
    return Refusal(
        EMERGENCY_NUMBER,
        f"{visible(raw)} {what}, and this tool never places emergency calls: if someone needs help, "
        f"dial {code} yourself from a phone now.",
        {"input": visible(raw, quote=False), "emergency_number": code, "regions": regions[:10],
         "region_count": len(regions)},
    )


# --- malformed input --------------------------------------------------------------------------------

_EXTENSION = re.compile(r"(;\s*ext\s*=|\bext\.?|\bextension|(?<![a-z])x\.?|#|,|;)\s*[0-9]{1,6}\s*#?\s*$", re.I)


def _suggest(raw: str) -> str | None:
    """The canonical form of a leniently parsed input, offered as a hint (the caller must resubmit it)."""
    try:
        number = phonenumbers.parse(_normalise(raw) if len(raw) <= 64 else raw, None)
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, PhoneNumberFormat.E164)
    except Exception:  # a hint is optional: nothing in phonenumbers may turn a refusal into a crash
        return None
    return None


def _invalid(raw: str, problem: str, message: str, *, suggestion: str | None = None, **details) -> Refusal:
    info = {"input": visible(raw, quote=False), "problem": problem, **details}
    if suggestion:
        info["suggestion"] = suggestion
    return Refusal(INVALID_NUMBER, message, info)


def _malformed(raw: str) -> Refusal:
    v = visible(raw)
    hint = _suggest(raw)
    e_g = f"e.g. {hint}" if hint else f"e.g. {EXAMPLE}"
    stripped = raw.strip()
    if not stripped:
        return _invalid(raw, "empty", f"The destination number is empty: give the number to call in E.164, {e_g}.")
    if not stripped.isascii() or any(unicodedata.category(c) in ("Cc", "Cf") for c in raw):
        names = ", ".join(char_names(raw))
        return _invalid(raw, "non_ascii",
                        f"{v} contains invisible or non-ASCII characters ({names}): "
                        f"write the number with '+' and ASCII digits only, {e_g}.",
                        suggestion=hint, characters=char_names(raw))
    if stripped[:4].lower() == "tel:":
        return _invalid(raw, "tel_uri", f"{v} is a tel: URI: drop 'tel:' and all separators, {e_g}.",
                        suggestion=hint)
    if _EXTENSION.search(stripped) and sum(c.isdigit() for c in stripped) >= 8:
        return _invalid(raw, "extension",
                        f"{v} has an extension, which this tool cannot dial: call the main number "
                        f"({hint or 'in E.164 without the extension'}) and ask for the extension, or use a direct number.",
                        suggestion=hint)
    if any(c.isalpha() for c in stripped):
        return _invalid(raw, "letters", f"{v} contains letters: write the number with digits only, {e_g}.",
                        suggestion=hint)
    digits = sum(c.isdigit() for c in raw)
    if not stripped.startswith("+"):
        extra = ", replacing a leading international prefix 00 with '+'" if stripped.startswith("00") else ""
        return _invalid(raw, "missing_plus",
                        f"{v} does not start with '+' and a country code: write it in E.164{extra}, "
                        f"e.g. {EXAMPLE} for a US number.")
    if stripped[1:2] == "0":
        return _invalid(raw, "bad_country_code",
                        f"{v} cannot be E.164 because country codes never start with 0: write '+' and the "
                        f"country code, {e_g}.")
    if raw != stripped or (stripped[1:] and not stripped[1:].isdigit()):
        return _invalid(raw, "formatting",
                        f"{v} is not a strict E.164 number: write it as + and digits only, {e_g}.",
                        suggestion=hint)
    if digits > 15:
        return _invalid(raw, "too_long",
                        f"{v} has {digits} digits but E.164 allows at most 15: check the number.", digits=digits)
    return _invalid(raw, "too_short",
                    f"{v} has only {digits} digits, too few for a phone number: give the full number with "
                    f"country code, e.g. {EXAMPLE}.", digits=digits)
