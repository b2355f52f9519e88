"""Model folders the tests alter: copies of the demo pair with one thing changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def swapped_tokens_copy(source: Path, target: Path) -> tuple[int, str]:
    """Copy a model folder and swap the ids of two tokens; return the lower id and its token."""
    shutil.copytree(source, target)
    path = target / "tokenizer.json"
    data = json.loads(path.read_text())
    vocab = data["model"]["vocab"]
    (first, low), (second, high) = sorted(vocab.items(), key=lambda kv: kv[1])[300:302]
    vocab[first], vocab[second] = high, low
    path.write_text(json.dumps(data))
    return int(low), second
