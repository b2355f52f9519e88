"""/metrics after real requests over loopback: the counters move by the right amounts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
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


def test_hacking_signals_by_hand(fake_server: Callable[..., Any]) -> None:
    from dense_reward_server.sequence import ScoreInput

    with (
        fake_server(implausible_logprob=-0.6) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        repeats = [7, 8, 9, 10] * 3  # 9 4-grams, 5 of them repeats
        plain = [11, 12, 13]
        items = [
            {"prompt_token_ids": [1, 2], "completion_token_ids": repeats},
            {"prompt_token_ids": [1, 2], "completion_token_ids": plain, "mask": [1, 0, 1]},
        ]
        before = scrape(http)
        assert http.post(URL, json={"items": items}).status_code == 200
        after = scrape(http)
        pair = server.pair

    def delta(name: str) -> float:
        return value(after, name) - value(before, name)

    sft = [pair.sft.expected(ScoreInput([1, 2], ids)) for ids in (repeats, plain)]
    base = [pair.base.expected(ScoreInput([1, 2], ids)) for ids in (repeats, plain)]
    scored = [np.ones(12, bool), np.array([1, 0, 1], bool)]
    assert delta("drs_completion_tokens_count") == 2
    assert delta("drs_completion_tokens_sum") == 12 + 2
    assert delta("drs_completion_repeated_ngrams_sum") == pytest.approx(5 / 9)
    means = [float(np.mean(s[m])) for s, m in zip(sft, scored, strict=True)]
    assert delta("drs_completion_sft_logprob_sum") == pytest.approx(sum(means), rel=1e-6)
    shares = [
        float(np.mean(((s - b) > 0)[m] & (s < -0.6)[m]))
        for s, b, m in zip(sft, base, scored, strict=True)
    ]
    assert delta("drs_completion_implausible_reward_sum") == pytest.approx(sum(shares))
    assert sum(shares) > 0  # the hand case exercises the signal, not only zeros
