"""Which sequences of a batch share a prompt: the unit both engines reuse prompt work over."""

from __future__ import annotations

from collections.abc import Sequence

from service.sequence import ScoreInput


def prompt_groups(batch: Sequence[ScoreInput]) -> list[list[int]]:
    """Indices of `batch` grouped by identical prompt ids, groups and members in input order.

    Not only a request's declared group: any items with equal prompts share (a trainer's flat
    batch of K samples per prompt is the common case).
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, item in enumerate(batch):
        groups.setdefault(tuple(item.prompt_ids), []).append(index)
    return list(groups.values())
