"""Abort the work of a request whose client went away.

Starlette does not cancel a handler when the client disconnects; a reward request can hold
both engines for seconds. Once the body is read, the next ASGI message can only be
`http.disconnect`, so we wait for it beside the work and cancel the work when it comes
(cancelling the engine calls aborts them in vLLM). Same idea as vLLM's `with_cancellation`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

from dense_reward_server.errors import ClientError

T = TypeVar("T")


class ClientDisconnected(ClientError):
    status = 499
    default_code = "client_disconnected"


async def wait_for_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run `work`; if the client disconnects first, cancel it and raise ClientDisconnected."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            # cancel() only asks: wait until the work has really stopped (and aborted its
            # engine requests) before answering, else `task.result()` is not there yet.
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise ClientDisconnected("the client disconnected; its work was aborted")
    return task.result()
