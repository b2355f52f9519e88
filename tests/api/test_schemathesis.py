"""Schemathesis against the live OpenAPI spec of a fake-engine server on loopback.

Every operation in /openapi.json gets generated requests, valid by the schema and not
(schemathesis' positive and negative modes), a bounded number per operation and the same ones
on every run (derandomized). Each response is checked by schemathesis (no 5xx; status code,
content type, headers and body conform to the spec; schema-invalid data is rejected) and by
us (the error body shape). The counts go to results/schemathesis.json.

The schema is the app's own OpenAPI document, built at import (create_app loads nothing), and
test_the_spec_is_the_live_one checks it is exactly what the server serves at /openapi.json.
Why not `schemathesis.pytest.from_fixture` (load from the live URL inside a fixture): with
pytest 9 it fails before any case runs (`'Function' object has no attribute '_nodeid'`,
schemathesis 4.32.5, pytest/lazy.py).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from dense_reward_server.api.app import create_app
from dense_reward_server.config import Settings
from dense_reward_server.core.lifecycle import Lifecycle
from harness.paths import ROOT

REPORT = ROOT / "results" / "schemathesis.json"
MAX_EXAMPLES = 150
# The same bounded, derandomized cases on every run; nothing written to the work tree.
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)

STATUSES: dict[str, Counter[int]] = {}
STARTED = time.monotonic()


@pytest.fixture(scope="module", params=["model", "none"])
def server_url(request: pytest.FixtureRequest, fake_server: Callable[..., Any]) -> Iterator[str]:
    """A server with a base model, then one without (DRS_BASELINE=none: `base` is null)."""
    settings = {"max_items_per_request": 8, "max_model_len": 256, "baseline": request.param}
    with fake_server(vocab_size=1024, **settings) as server:
        yield server.url
    write_report()


def write_report() -> None:
    """Counts over every server so far (the last write holds both baselines)."""
    cases = {op: sum(counts.values()) for op, counts in STATUSES.items()}
    server_errors = {
        op: sum(n for status, n in counts.items() if status >= 500)
        for op, counts in STATUSES.items()
    }
    report = {
        "schemathesis": schemathesis.__version__,
        "max_examples_per_operation": MAX_EXAMPLES,
        "servers": ["baseline=model", "baseline=none"],
        "cases": sum(cases.values()),
        "server_errors_5xx": sum(server_errors.values()),
        "seconds": round(time.monotonic() - STARTED, 1),
        "operations": {
            op: {
                "cases": cases[op],
                "5xx": server_errors[op],
                "statuses": {str(k): v for k, v in sorted(STATUSES[op].items())},
            }
            for op in sorted(STATUSES)
        },
    }
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nschemathesis: {report['cases']} cases, {report['server_errors_5xx']} 5xx -> {REPORT}")


def app_spec() -> dict[str, Any]:
    # Model paths are only read by the lifespan, which this app never runs.
    return create_app(Lifecycle(Settings(backend="transformers"))).openapi()


SPEC = app_spec()
schema = schemathesis.openapi.from_dict(SPEC)


def test_the_spec_is_the_live_one(server_url: str) -> None:
    live = httpx.get(f"{server_url}/openapi.json", timeout=30)
    assert live.status_code == 200
    assert live.json() == json.loads(json.dumps(SPEC))
    assert len(list(schema.get_all_operations())) >= 4


@schemathesis.check
def spec_error_body(ctx: CheckContext, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx has the one error shape: {"error": {"code", "message", "index", "field"}}."""
    if response.status_code < 400:
        return None
    body = json.loads(response.content)
    assert set(body) == {"error"}, f"not the error shape: {body}"
    assert set(body["error"]) == {"code", "message", "index", "field"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["code"], body
    return True


@schema.parametrize()
@FUZZ
def test_api_conforms_to_its_openapi_spec(case: Any, server_url: str) -> None:
    operation = f"{case.method} {case.path}"
    response = case.call(base_url=server_url, timeout=30)
    STATUSES.setdefault(operation, Counter())[response.status_code] += 1
    # A request valid by the JSON schema may still be refused, rightly: token ids outside
    # the vocabulary, both `prompt` and `messages`, a mask of the wrong length, a request
    # over the server's limits. Those rules live in the service, not in the schema.
    excluded = [positive_data_acceptance]
    if own_deadline_expired(case, response):
        excluded.append(not_a_server_error)
    case.validate_response(response, additional_checks=[spec_error_body], excluded_checks=excluded)


def own_deadline_expired(case: Any, response: Any) -> bool:
    """A 504 for the request's own `timeout_s` (the fuzzer sends 5e-324 s): the documented
    answer to a deadline that ran out, not a server fault."""
    if response.status_code != 504 or not isinstance(case.body, dict):
        return False
    code = json.loads(response.content)["error"]["code"]
    return code == "deadline_exceeded" and case.body.get("timeout_s") is not None


# Bodies valid for the service, not only for the schema: schemathesis' own cases almost never
# are (ids must be in the vocabulary, exactly one prompt field, masks of the right length), so
# the 200 responses get their conformance check here, with every check on.
VOCAB = 1024


@st.composite
def token_item(draw: st.DrawFn) -> dict[str, Any]:
    completion = draw(st.lists(st.integers(3, VOCAB - 1), min_size=1, max_size=12))
    item: dict[str, Any] = {
        "prompt_token_ids": draw(st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=12)),
        "completion_token_ids": completion,
    }
    if draw(st.booleans()):
        item["mask"] = draw(
            st.lists(st.sampled_from([0, 1]), min_size=len(completion), max_size=len(completion))
        )
    if draw(st.booleans()):
        cut = draw(st.integers(1, len(completion)))
        item["step_spans"] = [[0, cut]] + (
            [[cut, len(completion)]] if cut < len(completion) else []
        )
    if draw(st.booleans()):
        item["id"] = draw(st.text(max_size=8))
    return item


TEXT = st.text(alphabet="0123456789 abc\n", min_size=1, max_size=16)
VALID_ITEM = (
    token_item()
    | st.fixed_dictionaries({"prompt": TEXT, "completion": TEXT})
    | st.fixed_dictionaries(
        {
            "messages": st.just([{"role": "user", "content": "Sort ascending: 3 1 2"}]),
            "completion": TEXT,
        }
    )
)
TOKEN_IDS = st.lists(st.integers(3, VOCAB - 1), min_size=1, max_size=12)
GROUP_ITEM = st.fixed_dictionaries(
    {
        "prompt_token_ids": TOKEN_IDS,
        "completions": st.lists(TOKEN_IDS | TEXT, min_size=1, max_size=2),
    }
) | st.fixed_dictionaries({"prompt": TEXT, "completions": st.lists(TEXT, min_size=1, max_size=2)})
VALID_BODY = st.fixed_dictionaries(
    {"items": st.lists(VALID_ITEM | GROUP_ITEM, min_size=1, max_size=4)},
    optional={
        "beta": st.floats(0.01, 100),
        "gamma": st.floats(0, 1),
        "append_eos": st.booleans(),
        "include": st.lists(
            st.sampled_from(["tokens", "offsets", "logprobs", "returns"]), unique=True
        ),
        "steps": st.fixed_dictionaries({"delimiter": st.sampled_from([" ", "\n", "1"])}),
        "group_baseline": st.sampled_from(["mean", "leave_one_out"]),
        "encoding": st.sampled_from(["json", "base64"]),
    },
)


def call_and_validate(server_url: str, body: dict[str, Any], label: str) -> Any:
    operation = schema["/v1/token_rewards"]["POST"]
    case = operation.Case(body=body, media_type="application/json")
    response = case.call(base_url=server_url, timeout=30)
    STATUSES.setdefault(label, Counter())[response.status_code] += 1
    case.validate_response(response, additional_checks=[spec_error_body])
    return response


@FUZZ
@given(body=VALID_BODY)
def test_valid_requests_get_answers_that_conform_to_the_spec(
    server_url: str, body: dict[str, Any]
) -> None:
    response = call_and_validate(server_url, body, "POST /v1/token_rewards (valid bodies)")
    assert response.status_code == 200, response.text


def test_group_results_conform_to_the_spec(server_url: str) -> None:
    body = {"items": [{"prompt": "Sort: 2 1", "completions": ["1 2", [17, 4]]}]}
    response = call_and_validate(server_url, body, "POST /v1/token_rewards (examples)")
    assert len(response.json()["results"][0]["completions"]) == 2


def test_base64_results_conform_to_the_spec(server_url: str) -> None:
    body = {
        "items": [{"prompt_token_ids": [1, 40], "completion_token_ids": [50, 51]}],
        "encoding": "base64",
    }
    response = call_and_validate(server_url, body, "POST /v1/token_rewards (examples)")
    assert isinstance(response.json()["results"][0]["rewards"], str)


def test_method_not_allowed_lists_the_allowed_methods(server_url: str) -> None:
    response = httpx.request("TRACE", f"{server_url}/v1/token_rewards", timeout=30)
    assert response.status_code == 405
    assert response.headers.get("allow") == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"
