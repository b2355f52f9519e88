"""The tokenizer fingerprint a client sends so that the server can refuse ids tokenized
for another vocabulary (409 `tokenizer_mismatch`). Duck-typed on a Hugging Face tokenizer:
no transformers import here."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 of the vocabulary, added and special tokens, and chat template.

    Two tokenizers with the same fingerprint turn the same text into the same ids.
    """
    added = {
        str(index): [token.content, token.special]
        for index, token in tokenizer.added_tokens_decoder.items()
    }
    payload = {
        "vocab": sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]),
        "added_tokens": added,
        "special_tokens": {
            "bos": tokenizer.bos_token,
            "eos": tokenizer.eos_token,
            "pad": tokenizer.pad_token,
            "unk": tokenizer.unk_token,
        },
        "chat_template": tokenizer.chat_template,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return "sha256:" + hashlib.sha256(blob).hexdigest()
