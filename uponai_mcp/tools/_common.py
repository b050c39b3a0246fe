"""What every tool module shares: reaching the services, the annotations, and the answer of a confirmation
resolver that asks nothing. Refusals need no wrapping: `ContractServer` turns whatever a tool raises into a
coded error result."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcp.server.mcpserver import Context
from mcp.types import ToolAnnotations
from pydantic import BaseModel

if TYPE_CHECKING:
    from uponai_mcp.services import Services

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)
LOCAL_READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                             open_world_hint=False)
IDEMPOTENT_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                                   open_world_hint=True)
DIAL = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True)


def services(ctx: Context) -> Services:
    return ctx.request_context.lifespan_context.require()


class NoQuestion(BaseModel):
    """A confirmation resolver's answer when it asks the person nothing, and why (not_required, token, replay,
    unsupported, refused)."""

    reason: str
