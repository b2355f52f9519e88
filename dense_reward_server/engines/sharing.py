"""Which sequences of a batch share a prompt: the unit both engines reuse prompt work over."""

from __future__ import annotations

from collections.abc import Sequence

from dense_reward_server.sequence import ScoreInput


def prompt_groups(batch: Sequence[ScoreInput], share: bool = True) -> list[list[int]]:
    """Indices of `batch` grouped by identical prompt ids, groups and members in input order
    (`share` off: every sequence a group of its own).

    Not only a request's declared group: any items with equal prompts share (a trainer's flat
    batch of K samples per prompt is the common case).
    """
    if not share:
        return [[index] for index in range(len(batch))]
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, item in enumerate(batch):
        groups.setdefault(tuple(item.prompt_ids), []).append(index)
    return list(groups.values())
