"""The tool contract, enforced for every registered tool in one place.

- Arguments are validated strictly, as JSON: an unknown key is refused, nothing is coerced (`true` is not an
  integer, `"2"` is not one either), non-finite numbers and over-deep nesting are refused before pydantic runs.
- Input schemas are compact and portable: `$ref`s inlined, no titles, no `default: null`, optional fields
  without their `null` branch, descriptions on one line, every object we define closed.
- Every failure, whatever raised it (the SDK's validation, a service's `Refused`, the platform, the store,
  a bug), becomes an error result whose text is `<code>: <sentence>` and whose `_meta` carries the same as
  data; an error result never has `structuredContent` (a client validates that against the output schema).
- A successful result's text is one short line for a person and the structured content as compact JSON.

Tools are written as plain `@mcp.tool` functions; `ContractServer.seal()` applies all of this after they are
registered, so a new tool cannot forget it.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, ConfigDict, ValidationError

from uponai_mcp.api import errors as api_errors
from uponai_mcp.errors import ERROR_META_KEY, Refused, from_api_error
from uponai_mcp.store.errors import StoreUnavailable

log = logging.getLogger(__name__)

MAX_DEPTH = 10  # nesting of any argument value; agent_override is the deepest we define (4)
MAX_ERRORS_LISTED = 5


# --- argument checks --------------------------------------------------------------------------------


def check_json_value(arguments: dict[str, Any]) -> None:
    """Refuse what JSON cannot carry (NaN, Infinity) and what is nested deeper than any argument we define.
    Iterative, so a hostile depth cannot exhaust the stack."""
    stack: list[tuple[Any, str, int]] = [(v, k, 1) for k, v in arguments.items()]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise Refused("invalid_argument", f"{_top(path)} is nested deeper than {MAX_DEPTH} levels; "
                          "send a flatter value.", field=_top(path))
        if isinstance(value, float) and not math.isfinite(value):
            raise Refused("invalid_argument", f"{path} is {value}, which JSON cannot carry; send a finite "
                          "number.", field=path)
        if isinstance(value, dict):
            stack.extend((v, f"{path}.{k}", depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value))


def _top(path: str) -> str:
    return path.split(".", 1)[0].split("[", 1)[0]


def invalid_argument(exc: ValidationError, *, tool: str | None = None, known: list[str] | None = None) -> Refused:
    """Every problem pydantic found, as one sentence and as data (`details.errors`, `details.field`)."""
    problems: list[dict[str, str]] = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "arguments"
        if err["type"] == "extra_forbidden":
            where = f" of {tool}" if tool and "." not in field else ""
            hint = f" (it takes: {', '.join(known)})" if known and "." not in field else ""
            problem = f"is not an argument{where}{hint}"
        elif err["type"] == "missing":
            problem = "is required"
        else:
            problem = _lower_first(err["msg"])
        problems.append({"field": field, "problem": problem})
    listed = "; ".join(f"{p['field']} {p['problem']}" for p in problems[:MAX_ERRORS_LISTED])
    more = f" (and {len(problems) - MAX_ERRORS_LISTED} more)" if len(problems) > MAX_ERRORS_LISTED else ""
    return Refused("invalid_argument", f"{listed}{more}; fix the arguments and try again.",
                   field=problems[0]["field"] if problems else None, errors=problems)


def _lower_first(text: str) -> str:
    text = text.replace("Input should be", "should be").replace("Value error, ", "")
    return text[:1].lower() + text[1:]


def check_closed_objects(arguments: dict[str, Any], schema: dict[str, Any]) -> None:
    """Refuse a key that a closed object of the published schema does not list, at any depth. Nested models
    may ignore extra keys when they parse platform data; as arguments, what the schema closes is closed."""
    stack: list[tuple[Any, dict[str, Any], str]] = [(arguments, schema, "")]
    while stack:
        value, node, path = stack.pop()
        branches = node.get("anyOf")
        if branches:  # the branch of the value's JSON type, if any
            kind = "object" if isinstance(value, dict) else "array" if isinstance(value, list) else None
            node = next((b for b in branches if b.get("type") == kind), {})
        if isinstance(value, dict):
            props = node.get("properties", {})
            if node.get("additionalProperties") is False:
                unknown = sorted(k for k in value if k not in props)
                if unknown:
                    where = f"{path}." if path else ""
                    raise Refused("invalid_argument", f"{where}{unknown[0]} is not a known field"
                                  f"{' of ' + path if path else ''} (known: {', '.join(props)}); fix the "
                                  "arguments and try again.", field=f"{where}{unknown[0]}")
            stack.extend((v, props[k], f"{path}.{k}" if path else k) for k, v in value.items() if k in props)
        elif isinstance(value, list) and isinstance(node.get("items"), dict):
            stack.extend((v, node["items"], f"{path}[{i}]") for i, v in enumerate(value))


class StrictArguments(FuncMetadata):
    """The SDK's argument metadata, validated strictly as JSON (no pre-parsing of strings into values)."""

    tool_name: str = ""
    schema_: dict[str, Any] = {}

    def validate_arguments(self, arguments_to_validate: dict[str, Any]) -> dict[str, Any]:
        check_json_value(arguments_to_validate)
        if self.schema_:
            check_closed_objects(arguments_to_validate, self.schema_)
        try:
            model = self.arg_model.model_validate_json(json.dumps(arguments_to_validate), strict=True)
        except ValidationError as exc:
            known = [f.alias or n for n, f in self.arg_model.model_fields.items()]
            raise invalid_argument(exc, tool=self.tool_name, known=known) from exc
        return model.model_dump_one_level()

    def convert_result(self, result: Any) -> Any:
        converted = super().convert_result(result)
        if isinstance(converted, CallToolResult) and not isinstance(result, CallToolResult) \
                and converted.structured_content is not None:
            converted.content = [TextContent(type="text", text=result_text(result, converted.structured_content))]
        return converted


def result_text(result: Any, data: Any) -> str:
    """One line for a person (the model's `text_line()` when it has one), then the data as compact JSON."""
    line = result.text_line() if hasattr(result, "text_line") else ""
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"{line}\n{body}" if line else body


# --- schemas ----------------------------------------------------------------------------------------


def compact_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Inline `$ref`s and drop what a model does not need; close every object that lists its properties."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(n) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return walk(merged)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("$defs", "title") or (key == "default" and value is None):
                continue
            if key == "properties":  # property names are data, not keywords: walk only their schemas
                out[key] = {name: walk(sub) for name, sub in value.items()}
            elif key == "items" and isinstance(value, dict) and "description" in node:
                # the array says what its items are; the item model's docstring would say it again
                out[key] = {k: v for k, v in walk(value).items() if k != "description"}
            elif key == "description":
                out[key] = one_line(value)
            else:
                out[key] = walk(value)
        branches = out.get("anyOf")
        if isinstance(branches, list):
            kept = [b for b in branches if b != {"type": "null"}]
            if len(kept) == 1 and len(kept) < len(branches):  # optional X: omitting it means null
                del out["anyOf"]
                out = {**kept[0], **out}
        if out.get("type") == "object" and "properties" in out:
            out.setdefault("additionalProperties", False)
        return out

    return walk(schema)


def one_line(text: str) -> str:
    """A docstring as a description: no source indentation, paragraphs joined into one line."""
    return " ".join(inspect.cleandoc(text).split())


def strict_model(arg_model: type[BaseModel]) -> type[BaseModel]:
    config = ConfigDict(**{**arg_model.model_config, "extra": "forbid", "strict": True, "allow_inf_nan": False})
    return type(arg_model.__name__, (arg_model,), {"model_config": config, "__module__": arg_model.__module__})


def seal_tool(tool: Tool) -> None:
    fm = tool.fn_metadata
    model = strict_model(fm.arg_model)
    tool.parameters = compact_schema(model.model_json_schema(by_alias=True))
    tool.fn_metadata = StrictArguments(arg_model=model, output_schema=fm.output_schema, output_model=fm.output_model,
                                       wrap_output=fm.wrap_output, tool_name=tool.name, schema_=tool.parameters)
    tool.description = one_line(tool.description)


# --- error results ----------------------------------------------------------------------------------


def error_result(refusal: Refused) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=str(refusal))], is_error=True,
                          _meta={ERROR_META_KEY: refusal.as_data()})


def refusal_for(exc: BaseException, tool: str) -> Refused:
    """The refusal behind a failed tool call, looking through the SDK's wrapping."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, Refused):
            return seen
        if isinstance(seen, ValidationError):
            return invalid_argument(seen, tool=tool)
        if isinstance(seen, api_errors.ApiError):
            return from_api_error(seen)
        if isinstance(seen, StoreUnavailable):
            return Refused("store_unavailable", "The server's database is unavailable, so nothing was done; "
                           "try again shortly.")
        seen = seen.__cause__
    log.error("tool %s failed unexpectedly", tool, exc_info=exc)
    return Refused("internal_error", f"{tool} failed inside the server; nothing was dialled. The error is in "
                   "the server log; try again or report it.")


class ContractServer(MCPServer):
    """`MCPServer` whose tool calls always answer with a coded result (see the module docstring).

    `services_ready`, when set, is awaited before any tool call or resource read: the services are built in
    the background (`hub.py`), and only requests that need them wait."""

    services_ready: Callable[[], Awaitable[None]] | None = None

    def seal(self, *, read_only: bool, toolsets: tuple[str, ...] | None = None,
             toolset_of: Callable[[Tool], str] | None = None) -> None:
        """Call once all tools are registered. Tools of a toolset not enabled, and in read-only mode the
        mutating tools, leave tools/list; calling one answers `tool_not_enabled` or `read_only` (not "unknown
        tool")."""
        self.withheld: dict[str, Refused] = {}
        for tool in list(self._tool_manager.list_tools()):
            seal_tool(tool)
            toolset = toolset_of(tool) if toolset_of is not None else None
            if toolsets is not None and toolset not in toolsets:
                self.withheld[tool.name] = Refused(
                    "tool_not_enabled", f"{tool.name} belongs to the {toolset} toolset, which this server does not "
                    f"enable; an operator can add it to UPONAI_TOOLSETS (now {','.join(toolsets)}).",
                    toolset=toolset)
            elif read_only and not (tool.annotations and tool.annotations.read_only_hint):
                self.withheld[tool.name] = Refused(
                    "read_only", f"This server runs read-only, so {tool.name} is not available; an operator can "
                    "start it without --read-only / UPONAI_READ_ONLY.")
            if tool.name in self.withheld:
                self.remove_tool(tool.name)

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        if self._tool_manager.get_tool(name) is None:
            return error_result(self._missing(name))
        if self.services_ready is not None:
            await self.services_ready()
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            return error_result(refusal_for(exc, name))

    async def read_resource(self, uri: Any, context: Any = None) -> Any:
        if self.services_ready is not None:
            await self.services_ready()
        return await super().read_resource(uri, context)

    def _missing(self, name: str) -> Refused:
        if name in getattr(self, "withheld", {}):
            return self.withheld[name]
        shown = name if len(name) <= 64 else name[:64] + "..."
        return Refused("unknown_tool", f"There is no tool named {shown!r}; tools/list shows the tools.")
