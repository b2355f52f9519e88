"""Locust users for the benchmark shapes, against any deployment of the service.

    pip install locust                      # not a project dependency
    DRS_API_KEY=... PYTHONPATH=. locust -f loadtest/locustfile.py --host https://rewards.example \
        --headless -u 20 -r 2 -t 5m --csv loadtest/results/locust
    PYTHONPATH=. locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 SingleUser

Users: SingleUser, RlBatchUser, GrpoGroupUser, LongGroupUser: the benchmark's shapes
(harness/workloads.py, stdlib only, which this file imports: run it from a checkout with
PYTHONPATH=.). Token ids are drawn
from the server's vocabulary (one GET /v1/models at start).
Locust users are closed-loop (each waits for its answer); for open-loop latency under a fixed
arrival rate use python -m harness bench. 429 answers are reported under their own name
("refused 429") so refusals are not mixed with errors.
"""

import os
import random
from typing import Any

from locust import HttpUser, between, events, task

from harness.workloads import SHAPES, TokenSampler

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
    shape = SHAPES["single"]

    def on_start(self) -> None:
        self.tokens = TokenSampler(range(_vocab["size"]), random.Random())
        if self.shape.longest > _vocab["max_len"]:
            name = type(self).__name__
            raise RuntimeError(f"{name}: {self.shape.longest} tokens exceed max_model_len")

    @task
    def score(self) -> None:
        name = f"{ROUTE} [{type(self).__name__}]"
        body = self.shape.request(self.tokens).body()
        with self.client.post(
            ROUTE, json=body, headers=auth_headers(), name=name, catch_response=True
        ) as response:
            if response.status_code == 429:
                # Counted apart from failures: the server refused on purpose (admission).
                response.request_meta["name"] = f"{name} refused 429"
                response.success()
            elif response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")


class SingleUser(ShapeUser):
    weight = 4
    shape = SHAPES["single"]


class RlBatchUser(ShapeUser):
    weight = 1
    shape = SHAPES["rl_batch"]


class GrpoGroupUser(ShapeUser):
    weight = 2
    shape = SHAPES["grpo_group"]


class LongGroupUser(ShapeUser):
    weight = 1
    shape = SHAPES["long_group"]
