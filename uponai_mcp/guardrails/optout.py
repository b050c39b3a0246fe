"""Opt-out detection: did the callee ask not to be called again?

Pure: it reads an ended call object (the transcript's user turns, and the platform's analysis where it says so)
against a phrase list; no I/O. Only the callee's own turns count (the agent saying "we will not call you again"
is no opt-out). Text is compared case-folded, NFKC-normalised, with typographic apostrophes made plain,
punctuation turned into spaces; phrases in scripts written with spaces must match on word boundaries,
phrases in Japanese and Thai match as substrings.

The defaults cover the languages of the 15 supported countries (English; Spanish; French; German; Italian;
Hindi, in Devanagari and romanised; Japanese; Indonesian; Malay; Thai; Filipino/Tagalog). Operators add
phrases with UPONAI_OPT_OUT_PHRASES.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_PHRASES: dict[str, tuple[str, ...]] = {
    "en": ("don't call me again", "do not call me again", "don't call me anymore", "do not call me anymore",
           "don't call me any more", "never call me again", "stop calling me", "stop calling this number",
           "don't call this number", "do not call this number", "remove me from your list",
           "remove me from your calling list", "take me off your list", "take me off your calling list",
           "remove my number", "take my number off", "put me on your do not call list", "do not call list",
           "don't ever call", "lose my number", "unsubscribe me", "opt me out", "i want to opt out"),
    "es": ("no me vuelvas a llamar", "no me vuelva a llamar", "no me vuelvan a llamar", "deje de llamarme",
           "dejen de llamarme", "deja de llamarme", "no me llames más", "no me llame más", "no me llamen más",
           "no me llames mas", "no me llame mas", "no me llamen mas", "quítenme de su lista",
           "quitenme de su lista", "bórrenme de su lista", "borrenme de su lista", "elimine mi número",
           "elimine mi numero"),
    "fr": ("ne m'appelez plus", "ne me rappelez plus", "ne me rappelez jamais", "arrêtez de m'appeler",
           "arretez de m'appeler", "arrête de m'appeler", "retirez-moi de votre liste", "retirez moi de votre liste",
           "supprimez mon numéro", "supprimez mon numero", "ne plus être appelé", "ne plus etre appele"),
    "de": ("rufen sie mich nicht mehr an", "rufen sie mich nie wieder an", "ruf mich nicht mehr an",
           "hören sie auf mich anzurufen", "horen sie auf mich anzurufen", "nicht mehr anrufen",
           "streichen sie meine nummer", "löschen sie meine nummer", "loschen sie meine nummer",
           "nehmen sie mich von ihrer liste"),
    "it": ("non chiamatemi più", "non chiamatemi piu", "non mi chiami più", "non mi chiami piu",
           "non chiamarmi più", "non chiamarmi piu", "smettete di chiamarmi", "smetta di chiamarmi",
           "toglietemi dalla lista", "cancellate il mio numero"),
    "hi": ("मुझे दोबारा फोन मत करना", "मुझे दोबारा कॉल मत करना", "मुझे फिर से कॉल मत करो", "मुझे कॉल मत करो",
           "मुझे फोन मत करो", "कॉल करना बंद करो", "फोन करना बंद करो", "mujhe dobara call mat karna",
           "mujhe call mat karo", "mujhe phone mat karo", "call karna band karo", "phone karna band karo"),
    "ja": ("二度と電話しないで", "もう電話しないで", "電話してこないで", "もう電話をかけないで", "電話をかけないでください",
           "電話しないでください", "リストから削除して"),
    "id": ("jangan telepon saya lagi", "jangan menelepon saya lagi", "jangan hubungi saya lagi",
           "berhenti menelepon saya", "hapus nomor saya", "jangan telpon saya lagi"),
    "ms": ("jangan telefon saya lagi", "jangan hubungi saya lagi", "berhenti telefon saya",
           "buang nombor saya", "padam nombor saya"),
    "th": ("อย่าโทรมาอีก", "ไม่ต้องโทรมาอีก", "อย่าโทรหาฉันอีก", "เลิกโทรมา", "ลบเบอร์ของฉัน", "ลบเบอร์ผม"),
    "tl": ("huwag na kayong tumawag", "huwag mo na akong tawagan", "huwag niyo na akong tawagan",
           "wag na kayong tumawag", "tigilan niyo na ang pagtawag", "alisin niyo ang number ko"),
}
# Keys of the platform's post-call analysis (custom_analysis_data) that, when true, say the callee opted out.
ANALYSIS_KEYS = ("opt_out", "opted_out", "do_not_call", "dnc", "wants_no_more_calls")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold().translate(_APOSTROPHES)
    text = "".join(" " if c != "'" and unicodedata.category(c)[0] in "PSZC" else c for c in text)
    return _SPACES.sub(" ", text).strip()


def _spaced(phrase: str) -> bool:
    return " " in phrase or all(unicodedata.category(c)[0] != "L" or ord(c) < 0x0E00 for c in phrase)


@dataclass(frozen=True)
class Phrases:
    """A compiled phrase list."""

    items: tuple[str, ...]

    @classmethod
    def build(cls, extra: Iterable[str] = (), *, defaults: bool = True) -> Phrases:
        raw = [p for group in DEFAULT_PHRASES.values() for p in group] if defaults else []
        raw += [p for p in extra if p and p.strip()]
        return cls(tuple(dict.fromkeys(normalize_text(p) for p in raw if normalize_text(p))))

    def find(self, text: str) -> str | None:
        norm = normalize_text(text)
        padded = f" {norm} "
        for phrase in self.items:
            if (f" {phrase} " in padded) if _spaced(phrase) else (phrase in norm):
                return phrase
        return None


@dataclass(frozen=True)
class OptOut:
    call_id: str
    to_number: str | None
    evidence: str  # "transcript" or "analysis"
    phrase: str | None  # the phrase found, or the analysis key


def user_turns(call: Mapping[str, Any]) -> list[str]:
    """The callee's turns: transcript_object entries with role user, else `User:` lines of the transcript."""
    turns = [str(u.get("content") or "") for u in call.get("transcript_object") or []
             if isinstance(u, Mapping) and u.get("role") == "user"]
    if turns:
        return turns
    return [line.split(":", 1)[1] for line in str(call.get("transcript") or "").splitlines()
            if line.lower().startswith("user:")]


def detect(call: Mapping[str, Any], phrases: Phrases) -> OptOut | None:
    """The opt-out an ended call shows, or None. Inbound calls are ignored (their callee is us)."""
    call_id = str(call.get("call_id") or "")
    if not call_id or call.get("direction") == "inbound":
        return None
    to_number = call.get("to_number")
    analysis = call.get("call_analysis") or {}
    data = analysis.get("custom_analysis_data") if isinstance(analysis, Mapping) else None
    if isinstance(data, Mapping):
        for key in ANALYSIS_KEYS:
            if data.get(key) is True or (isinstance(data.get(key), str) and data[key].lower() in ("true", "yes")):
                return OptOut(call_id, to_number, "analysis", key)
    for turn in user_turns(call):
        found = phrases.find(turn)
        if found is not None:
            return OptOut(call_id, to_number, "transcript", found)
    return None
