"""/metrics after real requests over loopback: the counters move by the right amounts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

URL = "/v1/token_rewards"


def scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def client(fake_server: Callable[..., Any]) -> Iterator[httpx.Client]:
    with (
        fake_server(max_items_per_request=4) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        yield http


def test_counters_move_by_the_right_amounts(client: httpx.Client) -> None:
    before = scrape(client)
    items = [
        {"prompt_token_ids": [1, 2, 3], "completion_token_ids": [5, 6]},
        {"prompt_token_ids": [1], "completion_token_ids": [7, 8, 9, 10]},
    ]
    assert client.post(URL, json={"items": items}).status_code == 200
    assert client.post(URL, json={"items": items[:1]}).status_code == 200
    assert client.post(URL, json={"items": [{"prompt": "x"}]}).status_code == 422
    assert client.post(URL, json={"items": items * 3}).status_code == 413
    client.get("/health")
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = {"route": URL}
    assert delta("drs_requests_total", **route, status="200") == 2
    assert delta("drs_requests_total", **route, status="422") == 1
    assert delta("drs_requests_total", **route, status="413") == 1
    assert delta("drs_request_duration_seconds_count", **route) == 4
    assert delta("drs_items_total") == 3
    assert delta("drs_tokens_scored_total", model="sft") == 10 + 5
    assert delta("drs_tokens_scored_total", model="base") == 10 + 5
    assert delta("drs_rejections_total", reason="too_many_items") == 1
    assert delta("drs_token_reward_count") == 2 + 4 + 2
    assert delta("drs_sequence_reward_count") == 3
    assert value(after, "drs_inflight_requests") == 0
    assert value(after, "drs_inflight_tokens") == 0
    assert value(after, "drs_ready") == 1
    assert value(after, "drs_model_load_seconds", model="sft") >= 0
    # Probes and scrapes stay out of request metrics.
    assert not any(k[0] == "drs_requests_total" and ("route", "/health") in k[1] for k in after)


def test_unmatched_routes_share_one_label(client: httpx.Client) -> None:
    before = scrape(client)
    client.get("/no/such/route/1")
    client.get("/no/such/route/2")
    after = scrape(client)
    labels = {"route": "unmatched", "status": "404"}
    assert (
        value(after, "drs_requests_total", **labels) - value(before, "drs_requests_total", **labels)
        == 2
    )


def test_promtool_accepts_a_real_scrape(client: httpx.Client) -> None:
    import subprocess

    from harness.tools import find_tool

    body = {"items": [{"prompt_token_ids": [1, 2], "completion_token_ids": [3, 4]}]}
    assert client.post(URL, json=body).status_code == 200
    scrape_text = client.get("/metrics").text
    done = subprocess.run(
        [find_tool("promtool"), "check", "metrics"],
        input=scrape_text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
