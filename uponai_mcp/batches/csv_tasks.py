"""Batch tasks from CSV text, the way the UponAI dashboard reads a batch file (uponai-api.md §1.8).

Columns (header names are matched case-insensitively; spaces, '_' and '-' are interchangeable):
  phone number | phone_number | to_number | phone   the number to call (required, exactly one such column)
  override agent id, override agent version          per-row agent override (version: a whole number)
  metadata                                           a JSON object
  custom_sip_headers                                 a JSON object of header name -> text
  ignore e164 validation                             true/false (yes/no, 1/0); empty = false
  any other column                                   a dynamic variable named like the header (as written)
Empty cells are left out (a dynamic variable with an empty cell is not sent). Blank rows are skipped.

Everything wrong with the file itself (no phone column, bad JSON, a wrong type, a ragged row, too big)
raises `CsvError` naming the row and column: the whole request is refused and nothing is dialled. Whether a
number may be called is not decided here: the guardrails judge every task afterwards.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from typing import Any

MAX_TASKS = 10_000
MAX_CSV_BYTES = 4_000_000  # MCP HTTP transports cap a request body at 4 MiB anyway
MAX_PROBLEMS_SHOWN = 5
MAX_VARIABLE_NAME = 128

PHONE_COLUMNS = frozenset({"phone number", "phone", "to number", "phonenumber", "tonumber"})
KNOWN_COLUMNS = {
    "override agent id": "override_agent_id",
    "override agent version": "override_agent_version",
    "metadata": "metadata",
    "custom sip headers": "custom_sip_headers",
    "ignore e164 validation": "ignore_e164_validation",
}
_SEPARATORS = re.compile(r"[\s_\-]+")
_TRUE = frozenset({"true", "yes", "y", "1"})
_FALSE = frozenset({"false", "no", "n", "0", ""})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class CsvError(ValueError):
    """The CSV cannot be used as it is; the message says where and what to fix."""


@dataclass(frozen=True)
class CsvTask:
    row: int  # 1-based line of the row in the file (the header is line 1 when it is the first line)
    fields: dict[str, Any]  # to_number plus the optional task fields, ready for CallRequest


def normalize_header(name: str) -> str:
    return _SEPARATORS.sub(" ", name.strip().lower()).strip()


def parse_tasks_csv(text: str, *, max_tasks: int = MAX_TASKS, max_bytes: int = MAX_CSV_BYTES) -> list[CsvTask]:
    """Parse CSV text into tasks; raises CsvError for anything wrong with the file."""
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise CsvError(f"The CSV is larger than {max_bytes:,} bytes; split it into several batches.")
    text = text.removeprefix("\ufeff")  # a byte-order mark from Excel
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    columns: list[tuple[int, str, str]] = []  # (position, kind, name as written)
    tasks: list[CsvTask] = []
    problems: list[str] = []
    try:
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue  # blank row
            if header is None:
                header = cells
                columns = _columns(cells, line)
                continue
            if len(cells) > len(header) and any(c.strip() for c in cells[len(header):]):
                problems.append(f"row {line} has {len(cells)} cells but the header has {len(header)} "
                                "(quote values that contain commas)")
                continue
            if len(tasks) >= max_tasks:
                raise CsvError(f"The CSV has more than {max_tasks:,} rows; split it into several batches.")
            try:
                tasks.append(CsvTask(line, _row(cells, columns, line)))
            except CsvError as exc:
                problems.append(str(exc))
            if len(problems) > MAX_PROBLEMS_SHOWN:
                break
    except csv.Error as exc:
        raise CsvError(f"The CSV cannot be read near line {reader.line_num}: {exc}.") from exc
    if header is None:
        raise CsvError("The CSV is empty: give a header row with a phone number column and one row per call.")
    if problems:
        shown = "; ".join(problems[:MAX_PROBLEMS_SHOWN])
        more = " (and more)" if len(problems) > MAX_PROBLEMS_SHOWN else ""
        raise CsvError(f"The CSV has errors: {shown}{more}. Fix them and send it again; nothing was dialled.")
    if not tasks:
        raise CsvError("The CSV has a header but no rows to call.")
    return tasks


def _columns(header: list[str], line: int) -> list[tuple[int, str, str]]:
    columns: list[tuple[int, str, str]] = []
    seen: dict[str, str] = {}
    phone = []
    for pos, raw in enumerate(header):
        name = raw.strip()
        if not name:
            columns.append((pos, "blank", ""))
            continue
        key = normalize_header(name)
        if key in seen:
            raise CsvError(f"The CSV header names the column {name!r} twice (also {seen[key]!r}).")
        seen[key] = name
        if key in PHONE_COLUMNS:
            phone.append(name)
            columns.append((pos, "to_number", name))
        elif key in KNOWN_COLUMNS:
            columns.append((pos, KNOWN_COLUMNS[key], name))
        else:
            if len(name) > MAX_VARIABLE_NAME or _CONTROL.search(name):
                raise CsvError(f"Column {name[:40]!r} is not a usable dynamic variable name (at most "
                               f"{MAX_VARIABLE_NAME} printable characters).")
            columns.append((pos, "variable", name))
    if not phone:
        shown = ", ".join(repr(h.strip()) for h in header[:10] if h.strip()) or "none"
        hint = " (the file must be comma-separated)" if len(header) == 1 and any(s in header[0] for s in ";\t") \
            else ""
        raise CsvError(f"The CSV has no phone number column{hint}: name one 'phone number' (or phone_number, "
                       f"to_number); the header has {shown}.")
    if len(phone) > 1:
        raise CsvError(f"The CSV has more than one phone number column ({', '.join(map(repr, phone))}); keep one.")
    return columns


def _row(cells: list[str], columns: list[tuple[int, str, str]], line: int) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    variables: dict[str, str] = {}
    for pos, kind, name in columns:
        value = cells[pos].strip() if pos < len(cells) else ""
        where = f"row {line}, column {name!r}"
        if kind == "blank":
            if value:
                raise CsvError(f"row {line} has a value in a column without a header (position {pos + 1})")
        elif kind == "to_number":
            if not value:
                raise CsvError(f"row {line} has no phone number")
            fields["to_number"] = value
        elif kind == "variable":
            if value:
                variables[name] = cells[pos]  # dynamic variables keep their text as written
        elif not value:
            continue
        elif kind == "override_agent_id":
            fields[kind] = value
        elif kind == "override_agent_version":
            if not value.isdigit() or not value.isascii():
                raise CsvError(f"{where}: {value[:40]!r} is not a whole number")
            fields[kind] = int(value)
        elif kind in ("metadata", "custom_sip_headers"):
            fields[kind] = _json_object(value, where, strings_only=kind == "custom_sip_headers")
        elif kind == "ignore_e164_validation":
            low = value.lower()
            if low not in _TRUE | _FALSE:
                raise CsvError(f"{where}: {value[:40]!r} is not true or false")
            fields[kind] = low in _TRUE
    if variables:
        fields["retell_llm_dynamic_variables"] = variables
    return fields


def _json_object(value: str, where: str, *, strings_only: bool) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CsvError(f"{where}: not valid JSON ({exc.__class__.__name__}: {str(exc)[:60]})") from exc
    if not isinstance(parsed, dict):
        raise CsvError(f"{where}: must be a JSON object like {{\"key\": \"value\"}}")
    if strings_only and not all(isinstance(v, str) for v in parsed.values()):
        raise CsvError(f"{where}: every header value must be a string")
    return parsed
