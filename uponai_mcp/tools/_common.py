"""What every tool module shares: reaching the services, annotations, and `refusals()`.

`refusals()` is optional: `ContractServer` turns whatever a tool raises into a coded error result."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import ValidationError

from uponai_mcp.api import errors as api_errors
from uponai_mcp.errors import Refused, from_api_error
from uponai_mcp.tools.contract import invalid_argument

if TYPE_CHECKING:
    from uponai_mcp.services import Services

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)
LOCAL_READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                             open_world_hint=False)
IDEMPOTENT_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                                   open_world_hint=True)
DIAL = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True)


def services(ctx: Context) -> Services:
    with refusals():
        return ctx.request_context.lifespan_context.require()


@contextmanager
def refusals() -> Iterator[None]:
    """Every refusal reaches the model as `<code>: <sentence>`."""
    try:
        yield
    except Refused as refusal:
        raise ToolError(str(refusal)) from refusal
    except api_errors.ApiError as exc:
        raise ToolError(str(from_api_error(exc))) from exc
    except ValidationError as exc:
        raise ToolError(str(invalid_argument(exc))) from invalid_argument(exc)
