"""The memory inspector in a real browser: Debian's headless Chromium driven by Playwright, against the
package's `memoryos serve`. The tests assert what the pages show and save screenshots (in
MEMORYOS_SCREENSHOT_DIR, default .memoryos/screenshots; the README's comes from docs/)."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memoryos_workers.testing.responders import default_responder
from tests.apps.http.conftest import KEYS, Api, turns
from tests.apps.http.test_api import _fail_persona_of
from tests.conftest import FAKE_LLM
from tests.processes import ROOT

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("MEMORYOS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(os.environ.get("MEMORYOS_SCREENSHOT_DIR", ROOT / ".memoryos" / "screenshots"))
INJECTION = '<script>window.__pwned = 1</script><img src="x" onerror="window.__pwned = 2"> my cat is Pimenta'


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail("headless Chromium is missing: run deploy/local/ensure-test-tools.sh as root (make test does), "
                    "or set MEMORYOS_CHROMIUM to a Chromium binary")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def people(api: Api) -> dict[str, str]:
    """acme: a rich user (with a turn trying to inject script) and one with a dead letter; globex: one user."""
    stamp = str(int(time.time() * 1000))[-6:]
    rich, broken, other = f"maya-{stamp}", f"broken-{stamp}", f"globex-user-{stamp}"
    FAKE_LLM.responder = _fail_persona_of("brokenpersona")
    try:
        with api.client("acme") as acme, api.client("globex") as globex:
            first = {"user_input": INJECTION, "agent_response": "Pimenta is a lovely name.", "turn_id": "inject",
                     "timestamp": "2025-02-27T09:00:00Z"}
            assert acme.post(f"/v1/users/{rich}/turns", json=[first, *story()]).status_code == 202
            assert acme.post(f"/v1/users/{broken}/turns", json=turns(20, "brokenpersona")).status_code == 202
            assert globex.post(f"/v1/users/{other}/turns", json=turns(5, "globexonly")).status_code == 202
            for stored in (f"acme:{rich}", f"acme:{broken}", f"globex:{other}"):
                api.wait_idle(stored)
            deadline = time.monotonic() + 60
            while not acme.get("/v1/dead-letters", params={"user_id": broken}).json()["dead_letters"]:
                assert time.monotonic() < deadline
                time.sleep(0.5)
            for query in ("climbing gym routes", "overhang bouldering", "what did I cook", "risotto"):
                acme.post(f"/v1/users/{rich}/retrieve", json={"query": query})  # latency chart, segment visits
    finally:
        FAKE_LLM.responder = default_responder
    return {"rich": rich, "broken": broken, "other": other}


BLOCKS = [  # one subject per batch of ten, so the fake LLM's topics become separate segments
    ("I went bouldering at the climbing gym; the overhang route {i} was hard", "Climbing takes practice."),
    ("I cooked risotto with mushrooms for dinner, attempt {i}", "That sounds delicious."),
    ("My sister Ottilie in Lisbon sent photos of the tram, part {i}", "Lisbon looks lovely."),
    ("Marathon training: I ran {i} kilometres along the river today", "Great pace!"),
]


def story() -> list[dict[str, Any]]:
    out = []
    for block, (user, assistant) in enumerate(BLOCKS):
        for i in range(10 if block < 3 else 9):
            n = block * 10 + i
            out.append({"user_input": user.format(i=i + 1), "agent_response": assistant, "turn_id": f"story-{n}",
                        "timestamp": f"2025-03-{1 + n % 28:02d}T{8 + block:02d}:30:00Z"})
    return out


def _page(browser: Any, api: Api) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1280, "height": 900}, base_url=api.url)
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.accept()

    page.on("dialog", on_dialog)
    return page, dialogs


def _sign_in(page: Any, key: str) -> Any:
    page.goto("/ui")
    assert page.url.endswith("/ui/login")
    page.fill("#api_key", key)
    with page.expect_navigation():
        page.click("#sign-in")
    return page


def _shot(page: Any, name: str, **kwargs: Any) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), **kwargs)


def test_sign_in_needs_a_valid_key(browser: Any, api: Api) -> None:
    page, _ = _page(browser, api)
    _sign_in(page, "not-a-valid-key-123")
    assert page.url.endswith("/ui/login")
    assert page.inner_text("#login-error") == "That key is not valid."
    page.goto("/ui/users/anyone")
    assert page.url.endswith("/ui/login")  # no page without a session
    page.close()


def test_overview_shows_the_tenants_users_counters_and_dead_letters(browser: Any, api: Api, people: dict) -> None:
    page, dialogs = _page(browser, api)
    _sign_in(page, KEYS["acme"])
    assert page.url.endswith("/ui") and page.inner_text("#tenant") == "tenant acme"
    users = page.locator("#users li").all_inner_texts()
    assert people["rich"] in users and people["broken"] in users
    assert people["other"] not in users and not any(u.startswith(("acme:", "globex:")) for u in users)
    assert page.locator("#queues tbody tr").count() == 3
    bars = page.locator("#latency-chart g.bar")
    assert bars.count() == 8 and sum(float(v) for v in _attrs(bars, "data-value")) >= 3
    assert "retrievals" in page.inner_text("#counters")
    dead = page.locator("#dead-letters tbody tr", has_text=people["broken"])
    assert dead.count() == 1 and "persona model down" in dead.inner_text()
    _shot(page, "inspector-overview.png", full_page=True)
    page.fill("#user-filter", people["broken"])  # the little JavaScript: filter as you type
    assert page.locator("#users li:visible").all_inner_texts() == [people["broken"]]

    with page.expect_navigation():
        dead.locator("button.replay").click()
    assert dialogs == ["confirm: Replay this user's dead letters?"]
    assert re.fullmatch(r"Re-queued [1-9]\d* dead letter item\(s\)\.", page.inner_text("#replayed"))
    page.close()


def _attrs(locator: Any, name: str) -> list[str]:
    return [locator.nth(i).get_attribute(name) for i in range(locator.count())]


def test_user_page_shows_every_tier_escapes_stored_text_and_runs_a_query(browser: Any, api: Api, people: dict,
                                                                        ) -> None:
    page, dialogs = _page(browser, api)
    _sign_in(page, KEYS["acme"])
    page.goto(f"/ui/users/{people['rich']}")
    assert page.inner_text("#user-id") == people["rich"]
    assert page.locator("#short-term tbody tr").count() == 10
    segments = page.locator("#segments tbody tr").count()
    # The fake answers one topic per LLM call, and the story's backlog of batches shares calls: 2 or more.
    assert segments >= 2 and page.locator("#heat-chart g.bar").count() == segments
    assert page.locator("#heat-chart line.threshold").count() == 1
    assert page.locator("#pages tbody tr").count() == 30
    assert page.inner_text("#profile-summary").strip() and page.locator("#traits tbody tr").count() >= 1
    assert page.locator("#user-facts tbody tr").count() >= 1 and page.locator("#assistant-facts tbody tr").count() >= 1

    # The stored <script> and onerror show as text and never run.
    page.fill("#query", "what is my cat called?")
    with page.expect_navigation():
        page.click("#run-query")
    ranked = page.locator("#ranked-pages tbody tr")
    assert any("<script>window.__pwned = 1</script>" in row for row in ranked.all_inner_texts())
    assert page.evaluate("window.__pwned") is None and dialogs == []
    scores = [float(s) for s in page.locator("#ranked-pages td.score").all_inner_texts()]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    assert page.locator("#ranked-pages td.found-by").first.inner_text()  # which searches found it
    assert re.fullmatch(r"\d+ tokens \(estimate\)", page.inner_text("#prompt-tokens"))
    assert "Pimenta" in page.inner_text("#prompt")
    # The Content-Security-Policy forbids inline script, whatever gets into the page.
    try:
        page.add_script_tag(content="window.__inline = 1")
    except Exception:  # noqa: BLE001 - Playwright reports the refused script; either way it must not run
        pass
    assert page.evaluate("window.__inline") is None
    page.set_viewport_size({"width": 1280, "height": 1500})
    _shot(page, "inspector-user.png")
    page.close()


def test_a_tenant_sees_only_its_own_users_and_can_sign_out(browser: Any, api: Api, people: dict) -> None:
    page, _ = _page(browser, api)
    _sign_in(page, KEYS["globex"])
    users = page.locator("#users li").all_inner_texts()
    assert people["other"] in users and people["rich"] not in users and people["broken"] not in users
    page.goto(f"/ui/users/{people['rich']}")  # globex's own (empty) user of that name, never acme's
    assert page.locator("#short-term tbody tr").inner_text() == "none"
    assert "bouldering" not in page.content() and "Pimenta" not in page.content()
    with page.expect_navigation():
        page.click("header button")
    assert page.url.endswith("/ui/login")
    page.goto("/ui")
    assert page.url.endswith("/ui/login")
    page.close()

    admin, _ = _page(browser, api)
    _sign_in(admin, KEYS["*"])
    everyone = admin.locator("#users li").all_inner_texts()
    assert f"acme:{people['rich']}" in everyone and f"globex:{people['other']}" in everyone
    admin.close()


def test_a_person_corrects_pins_and_deletes_a_fact_and_sees_its_history(browser: Any, api: Api, people: dict,
                                                                       ) -> None:
    page, dialogs = _page(browser, api)
    _sign_in(page, KEYS["acme"])
    page.goto(f"/ui/users/{people['rich']}")
    first = page.locator("#user-facts tr.current").first
    old_id, old_text = first.get_attribute("data-fact-id"), first.locator("input.fact-text").input_value()
    first.locator("input.fact-text").fill("Maya's cat is called Pimenta.")
    with page.expect_navigation():
        first.locator("button.correct").click()
    assert page.inner_text("#fact-done") == "Fact corrected."
    old = page.locator(f'#user-facts tr.history[data-fact-id="{old_id}"]')
    assert old.count() == 1 and "(superseded)" in old.inner_text() and old_text in old.inner_text()
    assert "corrected by inspector:acme" in old.locator("td.changes").inner_text()
    new = page.locator("#user-facts tr.current", has=page.locator('input[value="Maya\'s cat is called Pimenta."]'))
    assert new.count() == 1 and new.get_attribute("data-fact-id") != old_id
    assert re.fullmatch(r"since \d{4}-\d{2}", new.locator("td.held").inner_text())
    new_id = new.get_attribute("data-fact-id")
    with page.expect_navigation():
        new.locator("button.pin").click()
    assert page.inner_text("#fact-done") == "Fact pinned."
    row = page.locator(f'#user-facts tr.current[data-fact-id="{new_id}"]')
    assert "pinned" in row.locator("td.held").inner_text() and "pinned by inspector:acme" in row.inner_text()
    with page.expect_navigation():
        row.locator("button.delete").click()
    assert dialogs == ["confirm: Delete this fact?"] and page.inner_text("#fact-done") == "Fact deleted."
    assert page.locator(f'#user-facts tr[data-fact-id="{new_id}"]').count() == 0
    assert page.locator(f'#user-facts tr.history[data-fact-id="{old_id}"]').count() == 1, "history stays"
    page.fill("#new-fact", "Maya plays the cello.")
    with page.expect_navigation():
        page.click("#add-fact")
    assert page.inner_text("#fact-done") == "Fact added."
    assert page.locator('#user-facts tr.current input[value="Maya plays the cello."]').count() == 1
    _shot(page, "inspector-facts.png", full_page=True)
    page.close()
