"""The routing key a request carries so that a load balancer keeps a prompt on one replica.

A group's samples (K one-sample requests from verl's reward loop, say) share a prompt; sent to
the replica that scored that prompt last, they read its prefix cache instead of computing the
prompt again on every pod. Balancers hash this header consistently (k8s/README.md); a request
without it is balanced as any other.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

PROMPT_KEY_HEADER = "X-DRS-Prompt-Key"
# The item fields that hold a prompt (exactly one per item).
PROMPT_FIELDS = ("prompt_token_ids", "prompt", "messages")


def prompt_key(items: Sequence[Any]) -> str | None:
    """16 hex digits naming the first item's prompt (None when it has none to name).

    Equal prompts give equal keys whichever field holds them; the first item stands for the
    request (a trainer's one-sample request has one item, a group request one prompt).
    """
    if not items or not isinstance(items[0], Mapping):
        return None
    item = items[0]
    for name in PROMPT_FIELDS:
        value = item.get(name)
        if value is not None:
            text = json.dumps([name, to_jsonable(value)], separators=(",", ":"))
            return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()
    return None


def to_jsonable(value: Any) -> Any:
    """Token ids may come as a numpy array or tuple; they hash like the equal list."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(value, tuple):
        return list(value)
    return value


def routing_headers(items: Sequence[Any]) -> dict[str, str]:
    """The header to send with a request scoring `items` (none when there is no key)."""
    key = prompt_key(items)
    return {} if key is None else {PROMPT_KEY_HEADER: key}
