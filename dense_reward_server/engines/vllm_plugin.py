"""A vLLM general plugin (entry point `vllm.general_plugins`, loaded by every vLLM process, the
workers included, before their queues exist): how long vLLM's processes busy-wait.

vLLM's shared-memory queue readers (each worker waiting for its next step, each engine core for
its worker's output) spin on `sched_yield` for 1 s after every message
(`shm_broadcast.SpinCondition.busy_loop_s`; vLLM has no setting for it). On a CPU machine the
two engines' workers then spin on the cores that the API process, the engine cores and any
client beside them need: measured here (python -m harness burst), 200 one-sample requests sent
at once took 16-42x the same items as one request (httpx client), the workers burning 130-175
CPU-seconds, and `/health` went unanswered for up to 9.5 s. 10 ms of spin is enough to catch the
next step of a busy engine; 0 is not safe: a reader that never spins relies on vLLM's zmq
notification alone, which loses wake-ups (a lone request's p90 then 5.0 s, vLLM's recheck
interval). The server sets `ENV` only in its own engines' environment (`engines/options.py`,
setting `vllm_busy_loop_s`); where it is unset (any other vLLM in this environment, such as the
benchmark's `vllm serve` peers) vLLM is left as it is.
"""

from __future__ import annotations

import inspect
import logging
import os
from typing import Any

logger = logging.getLogger(__name__)

ENV = "DRS_VLLM_BUSY_LOOP_S"
PARAMETER = "busy_loop_s"


def register() -> None:
    """Make `busy_loop_s` the default of every SpinCondition this process creates."""
    value = os.environ.get(ENV)
    if value is None:
        return
    from vllm.distributed.device_communicators import shm_broadcast

    condition = getattr(shm_broadcast, "SpinCondition", None)
    init = getattr(condition, "__init__", None)
    if condition is None or init is None or getattr(init, "drs_busy_loop_s", None) is not None:
        return
    if PARAMETER not in inspect.signature(init).parameters:
        logger.warning("vLLM's SpinCondition has no %s: its busy-wait is left as is", PARAMETER)
        return
    seconds = float(value)

    def patched(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault(PARAMETER, seconds)
        init(self, *args, **kwargs)

    patched.drs_busy_loop_s = seconds  # type: ignore[attr-defined]
    condition.__init__ = patched
