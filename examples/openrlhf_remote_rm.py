"""What OpenRLHF sends to a remote reward model, sent to dense-reward-server's /get_reward.

    make run                                       # in one shell: the server on :8000
    python examples/openrlhf_remote_rm.py --url http://127.0.0.1:8000

In OpenRLHF itself: `--reward.remote_url http://HOST:8000/get_reward` (older releases:
`--remote_rm_url`). Queries are prompt + response text; `prompts` lets the server split them.
"""

from __future__ import annotations

import argparse
import json

import httpx

PROMPT = "<s><|user|>\nSort ascending: 42 7 19 3<|end|>\n<|assistant|>\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args()
    responses = ["3 7 19 42</s>", "3 19 7 42</s>"]
    body = {"query": [PROMPT + r for r in responses], "prompts": [PROMPT] * 2, "labels": ["", ""]}
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    answer = httpx.post(f"{args.url}/get_reward", json=body, headers=headers, timeout=60)
    answer.raise_for_status()
    print(json.dumps(answer.json(), indent=2))


if __name__ == "__main__":
    main()
