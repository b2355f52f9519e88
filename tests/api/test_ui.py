"""The heatmap page (/ui) in a real browser: Debian's chromium driven by Playwright.

The page is checked against the API itself: the same request sent with httpx must give the
numbers the page shows. Needs /usr/bin/chromium (scripts/install_browser.sh) or DRS_CHROMIUM.
`DRS_UI_SCREENSHOT=docs/heatmap.png` also saves the scored comparison for the README.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, FilePayload, Page, sync_playwright

from harness.servers import ThreadServer

CHROMIUM = os.environ.get("DRS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PROMPT = "Sort ascending: 42 7 19 3"
EXPERT, CORRUPTED = "3 7 19 42", "3 19 7 42"
KEY = "ui-test-key"
WAIT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no browser at {CHROMIUM}: run scripts/install_browser.sh (or set DRS_CHROMIUM)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def url(demo_url: str) -> str:
    """The session's demo-pair server (transformers engine): no second load of the pair."""
    return demo_url


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 800}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def number(text: str) -> float:
    """A number as the page prints it (a real minus sign, an explicit plus)."""
    return float(text.replace("\u2212", "-").replace("+", ""))


def rgb(css: str) -> tuple[int, int, int]:
    red, green, blue = (int(v) for v in re.findall(r"\d+", css)[:3])
    return red, green, blue


def fill_form(
    page: Page, completions: list[str], delimiter: str = "", key: str | None = None
) -> None:
    page.fill("#prompt", PROMPT)
    page.check("#chat")
    page.check("#append-eos")
    page.fill("#completion-a", completions[0])
    page.fill("#completion-b", completions[1] if len(completions) > 1 else "")
    page.fill("#delimiter", delimiter)
    if key is not None:
        page.fill("#api-key", key)


def score(page: Page) -> dict[str, Any]:
    """Click Score; return the JSON body the page sent."""
    with page.expect_request("**/v1/token_rewards") as request:
        page.click("#score")
    body = request.value.post_data_json
    assert isinstance(body, dict)
    return body


def panel_tokens(page: Page, index: int) -> list[dict[str, Any]]:
    tokens: list[dict[str, Any]] = page.eval_on_selector_all(
        f'.panel[data-completion="{index}"] .tok',
        """spans => spans.map(s => ({index: Number(s.dataset.index),
                                     tokenId: Number(s.dataset.tokenId),
                                     reward: s.dataset.reward,
                                     text: s.textContent,
                                     background: getComputedStyle(s).backgroundColor}))""",
    )
    return tokens


def stat(page: Page, index: int, field: str) -> tuple[float, float]:
    """(the full-precision data-value, the number shown) of one panel statistic."""
    cell = page.locator(f'.panel[data-completion="{index}"] dd[data-field="{field}"]')
    return float(cell.get_attribute("data-value") or "nan"), number(cell.inner_text().split()[0])


def test_heatmap_comparison_matches_the_api(page: Page, url: str, tmp_path: Path) -> None:
    page.goto(f"{url}/ui")
    assert page.url.endswith("/ui/")
    fill_form(page, [EXPERT, CORRUPTED])
    sent = score(page)
    page.wait_for_selector('.panel[data-completion="1"] .tok', timeout=WAIT_MS)

    assert sent == {
        "items": [
            {"messages": [{"role": "user", "content": PROMPT}], "completions": [EXPERT, CORRUPTED]}
        ],
        "append_eos": True,
        "include": ["tokens", "offsets", "logprobs"],
    }
    api = httpx.post(f"{url}/v1/token_rewards", json=sent, timeout=60).json()
    results = api["results"][0]["completions"]
    assert results[0]["total_reward"] > results[1]["total_reward"]

    shown = [panel_tokens(page, i) for i in range(2)]
    for result, tokens in zip(results, shown, strict=True):
        assert len(tokens) == result["num_tokens"]
        assert [t["index"] for t in tokens] == list(range(result["num_tokens"]))
        assert [t["tokenId"] for t in tokens] == result["token_ids"]
        for token, reward in zip(tokens, result["rewards"], strict=True):
            assert abs(float(token["reward"]) - reward) <= 1e-6
    assert shown[0][-1]["text"] == "</s>"  # the appended EOS is shown by its decoded text

    # Diverging scale around 0 at the max |reward| of both completions: blue/green side for
    # the most positive token, red side for the most negative one.
    everything = [
        (token, reward)
        for result, tokens in zip(results, shown, strict=True)
        for token, reward in zip(tokens, result["rewards"], strict=True)
    ]
    top, top_reward = max(everything, key=lambda pair: pair[1])
    low, low_reward = min(everything, key=lambda pair: pair[1])
    assert top_reward > 0 > low_reward
    red, green, blue = rgb(top["background"])
    assert max(green, blue) > red + 60, top["background"]
    red, green, blue = rgb(low["background"])
    assert red > max(green, blue) + 60, low["background"]
    scale = max(abs(top_reward), abs(low_reward))
    assert abs(float(page.get_attribute("#legend-max", "data-value") or "nan") - scale) < 1e-6
    assert abs(float(page.get_attribute("#legend-min", "data-value") or "nan") + scale) < 1e-6

    for i, result in enumerate(results):
        for field in ("total_reward", "mean_reward"):
            value, text = stat(page, i, field)
            assert abs(value - result[field]) < 1e-9
            assert abs(text - result[field]) < 5e-4
        assert stat(page, i, "scored_tokens")[0] == result["scored_tokens"]
        assert stat(page, i, "num_tokens")[0] == result["num_tokens"]
    diff = page.locator('[data-field="total_diff"]')
    expected = results[0]["total_reward"] - results[1]["total_reward"]
    assert abs(float(diff.get_attribute("data-value") or "nan") - expected) < 1e-9
    assert abs(number(diff.inner_text()) - expected) < 5e-4

    # Tooltip: token text, id and both log-probs of the hovered token.
    j = 2
    page.hover(f'.panel[data-completion="1"] .tok[data-index="{j}"]')
    tooltip = page.locator("#tooltip")
    tooltip.wait_for(state="visible", timeout=WAIT_MS)
    assert str(results[1]["token_ids"][j]) in tooltip.inner_text()
    assert json.dumps(results[1]["tokens"][j]) in tooltip.inner_text()
    for field, key in (("sft_logprob", "sft_logprobs"), ("base_logprob", "base_logprobs")):
        shown_value = number(tooltip.locator(f'dd[data-field="{field}"]').inner_text())
        assert abs(shown_value - results[1][key][j]) < 1e-4

    # The screenshot for the README, with the tooltip open.
    target = Path(os.environ.get("DRS_UI_SCREENSHOT") or tmp_path / "heatmap.png")
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000

    page.mouse.move(0, 0)
    tooltip.wait_for(state="hidden", timeout=WAIT_MS)
    with page.expect_download() as download:
        page.click("#download")
    saved = Path(download.value.path())
    assert download.value.suggested_filename == "token_rewards.json"
    assert json.loads(saved.read_text(encoding="utf-8")) == api


def test_steps_and_visible_newlines(page: Page, url: str) -> None:
    completion = "3 7\n19 42"
    page.goto(f"{url}/ui/")
    fill_form(page, [completion], delimiter="\\n")
    sent = score(page)
    page.wait_for_selector('.panel[data-completion="0"] .tok', timeout=WAIT_MS)
    assert sent["steps"] == {"delimiter": "\n"}
    assert sent["items"][0]["completion"] == completion
    result = httpx.post(f"{url}/v1/token_rewards", json=sent, timeout=60).json()
    result = result["results"][0]

    assert page.locator(".panel").count() == 1
    assert page.locator("#comparison").is_hidden()
    tokens = panel_tokens(page, 0)
    assert len(tokens) == result["num_tokens"]
    assert any("\u23ce" in t["text"] for t in tokens), [t["text"] for t in tokens]
    rows = page.locator('.panel[data-completion="0"] [data-field="step_reward"]')
    assert rows.count() == len(result["steps"]) == 2
    for k, step in enumerate(result["steps"]):
        assert abs(float(rows.nth(k).get_attribute("data-value") or "nan") - step["reward"]) < 1e-9


def test_api_errors_and_keys(page: Page, settings_for: Any) -> None:
    settings = settings_for(backend="transformers", api_keys=[KEY])
    with ThreadServer(settings) as keyed:
        page.goto(f"{keyed.url}/ui")  # the page itself needs no key
        fill_form(page, [EXPERT, CORRUPTED], key="wrong-key")
        score(page)
        error = page.locator("#error")
        error.wait_for(state="visible", timeout=WAIT_MS)
        assert error.get_attribute("data-status") == "401"
        assert error.locator('[data-field="code"]').inner_text() == "unauthorized"
        assert page.locator(".tok").count() == 0

        page.fill("#api-key", KEY)
        score(page)
        page.wait_for_selector('.panel[data-completion="1"] .tok', timeout=WAIT_MS)
        assert error.is_hidden()
        assert page.evaluate("sessionStorage.getItem('drs.apiKey')") == KEY
        page.reload()  # the key survives a reload of the tab
        assert page.input_value("#api-key") == KEY

        # A validation error shows the API's code, message, index and field.
        fill_form(page, ["", ""])
        score(page)
        error.wait_for(state="visible", timeout=WAIT_MS)
        assert error.get_attribute("data-status") == "422"
        assert error.locator('[data-field="code"]').inner_text() == "empty_completion"
        assert error.locator('[data-field="index"]').inner_text() == "0"
        assert error.locator('[data-field="field"]').inner_text() == "completion"
        assert error.locator('[data-field="message"]').inner_text()


def test_loading_a_pair_file_fills_the_form(page: Page, url: str) -> None:
    pair = {
        "messages": [{"role": "user", "content": PROMPT}],
        "chosen": EXPERT,
        "rejected": CORRUPTED,
        "kind": "swap",
    }
    page.goto(f"{url}/ui/")
    page.uncheck("#chat")
    page.set_input_files(
        "#load-file",
        files=FilePayload(
            name="pair.jsonl",
            mimeType="application/json",
            buffer=(json.dumps(pair) + "\n").encode(),
        ),
    )
    page.wait_for_function("document.querySelector('#completion-b').value !== ''")
    assert page.input_value("#prompt") == PROMPT
    assert page.is_checked("#chat")
    assert page.input_value("#completion-a") == EXPERT
    assert page.input_value("#completion-b") == CORRUPTED


def test_the_page_shows_the_servers_audit(
    browser: Browser, settings_for: Any, demo_url: str
) -> None:
    """A server started with an audit report serves it (GET /v1/audit) and the page shows its
    verdict, the edits that fail and the best-of-N curve; without one: 404, no audit box."""
    report_path = Path(__file__).resolve().parents[2] / "docs" / "audit" / "sort-sft-half.json"
    report = json.loads(report_path.read_text())
    with ThreadServer(settings_for(backend="transformers", audit_report=report_path)) as server:
        assert httpx.get(f"{server.url}/v1/audit", timeout=30).json() == report
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{server.url}/ui")
        page.wait_for_selector("#audit-verdict", timeout=WAIT_MS)
        assert page.inner_text("#audit-verdict") == "gameable"
        failing = page.eval_on_selector_all(
            "#audit tr.fails", "rows => rows.map(r => r.dataset.edit)"
        )
        assert sorted(failing) == sorted(report["off_support"]["failing"])
        shown = page.eval_on_selector_all(
            ".audit-curve td", "cells => cells.map(c => c.textContent)"
        )
        assert shown == [f"{row[0]:.3f}" for row in report["on_support"]["accuracy"]]
        context.close()
    missing = httpx.get(f"{demo_url}/v1/audit", timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "no_audit_report"
