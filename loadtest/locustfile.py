"""Locust users for the three benchmark shapes, against any deployment of the service.

    pip install locust                      # not a project dependency
    DRS_API_KEY=... locust -f loadtest/locustfile.py --host https://rewards.example \
        --headless -u 20 -r 2 -t 5m --csv loadtest/results/locust
    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 SingleUser   # one shape

Users: SingleUser (1 item, 32 + 96 tokens: a dashboard), RlBatchUser (64 items, prompt 64,
completion 192-448: a rollout batch), GrpoGroupUser (one 128-token prompt x 16 completions of
128). Token ids are drawn from the server's vocabulary (one GET /v1/models at start).
Locust users are closed-loop (each waits for its answer); for open-loop latency under a fixed
arrival rate use loadtest/bench.py. 429 answers are reported under their own name
("refused 429") so refusals are not mixed with errors.
"""

from __future__ import annotations

import os
import random
from typing import Any

from locust import HttpUser, between, events, task

API_KEY = os.environ.get("DRS_API_KEY")
ROUTE = "/v1/token_rewards"
_vocab: dict[str, int] = {}


def auth_headers() -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if API_KEY:
        headers["authorization"] = f"Bearer {API_KEY}"
    return headers


@events.test_start.add_listener
def read_vocabulary(environment: Any, **_: Any) -> None:
    """One GET /v1/models at start: token ids must stay inside the server's vocabulary."""
    import httpx

    host = environment.host or ""
    response = httpx.get(host.rstrip("/") + "/v1/models", headers=auth_headers(), timeout=30)
    response.raise_for_status()
    data = response.json()["data"][0]
    # Any id below vocab_size is valid to score (special ids included), so draw from them all.
    _vocab["size"] = int(data["vocab_size"])
    _vocab["max_len"] = int(data["max_model_len"])


class ShapeUser(HttpUser):
    abstract = True
    wait_time = between(0.0, 0.5)
    items = 1
    prompt_len = 32
    completion_len = (96, 96)
    group = False

    def on_start(self) -> None:
        self.rng = random.Random()
        longest = self.prompt_len + self.completion_len[1]
        if longest > _vocab.get("max_len", longest):
            raise RuntimeError(f"{type(self).__name__}: {longest} tokens exceed max_model_len")

    def ids(self, n: int) -> list[int]:
        return [self.rng.randrange(_vocab["size"]) for _ in range(n)]

    def completion(self) -> list[int]:
        return self.ids(self.rng.randint(*self.completion_len))

    def body(self) -> dict[str, Any]:
        if self.group:
            return {
                "items": [
                    {
                        "prompt_token_ids": self.ids(self.prompt_len),
                        "completions": [self.completion() for _ in range(self.items)],
                    }
                ]
            }
        return {
            "items": [
                {
                    "prompt_token_ids": self.ids(self.prompt_len),
                    "completion_token_ids": self.completion(),
                }
                for _ in range(self.items)
            ]
        }

    @task
    def score(self) -> None:
        name = f"{ROUTE} [{type(self).__name__}]"
        with self.client.post(
            ROUTE, json=self.body(), headers=auth_headers(), name=name, catch_response=True
        ) as response:
            if response.status_code == 429:
                # Counted apart from failures: the server refused on purpose (admission).
                response.request_meta["name"] = f"{name} refused 429"
                response.success()
            elif response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")


class SingleUser(ShapeUser):
    weight = 4
    items, prompt_len, completion_len = 1, 32, (96, 96)


class RlBatchUser(ShapeUser):
    weight = 1
    items, prompt_len, completion_len = 64, 64, (192, 448)


class GrpoGroupUser(ShapeUser):
    weight = 2
    items, prompt_len, completion_len, group = 16, 128, (128, 128), True
