"""The operator UI in a real browser: headless Chromium opens rq-dashboard (Procfile `dashboard:`) on a running
system (real redis-server, receiver, `python -m worker`, HTTP sink), finds the plugwatch queues and a
three-day-old dead letter with its true age, presses *Requeue*, and the sink then receives that event.

Screenshots of each step go to the test's temporary folder (`screenshots/`); assertions read the page's DOM.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from plugwatch import dead_letters as deadletters
from plugwatch import keys
from simulator.deliveries import Plan, plan_deliveries
from simulator.stories import build_scenario
from tests.conftest import TEST_DOWNSTREAM_SECRET, TEST_SECRET
from tests.e2e.harness import send
from tests.support.browser import headless_chromium, missing, wait_for
from tests.support.dashboard import running_dashboard
from tests.support.delivery import make_event
from tests.support.platform import wait_for_worker
from tests.support.servers import base_env, start_receiver
from tests.support.sinks import Sink
from tests.support.workers import start_worker

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("observability"),
              pytest.mark.skipif(missing() is not None, reason=str(missing()))]
THREE_DAYS = 3 * 86400
EVENT_ID = "evt_veh-1_7"  # make_event(7)



@pytest.fixture
def system(redis_url: str, sink: tuple[Sink, str], tmp_path: Path) -> Iterator[str]:
    """Receiver and worker delivering to the sink, after a few signed deliveries; yields the dashboard URL."""
    _, hook = sink
    env = {"DOWNSTREAM_WEBHOOK_URLS": hook, "DOWNSTREAM_WEBHOOK_SECRET": TEST_DOWNSTREAM_SECRET}
    receiver, receiver_url = start_receiver(base_env(REDIS_URL=redis_url, ENODE_WEBHOOK_SECRET=TEST_SECRET),
                                            tmp_path / "receiver.log")
    worker = start_worker(redis_url, tmp_path / "worker.log", **env)
    connection = redis.Redis.from_url(redis_url)
    try:
        wait_for_worker(worker, connection)
        scenario = build_scenario(2, seed=1)
        assert send(receiver_url + "/webhooks/enode", plan_deliveries(scenario.events, Plan(max_batch=5))).ok
        with running_dashboard(redis_url, tmp_path / "dashboard.log") as dashboard:
            yield dashboard
    finally:
        connection.close()
        worker.stop()
        receiver.stop()


def test_requeue_in_the_browser_delivers_an_old_dead_letter(
    system: str, sink: tuple[Sink, str], real_redis: redis.Redis, tmp_path: Path
) -> None:
    received, hook = sink
    body = make_event(7)
    job_id = deadletters.add(real_redis, hook, body, reason="HTTP 400: rejected by the sink", ttl=7 * 86400,
                             event_id=EVENT_ID, event_type="vehicle.plugged_in_at_home",
                             now=time.time() - THREE_DAYS, enqueued_at=time.time() - THREE_DAYS - 60)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with headless_chromium(tmp_path) as browser:
        browser.get(system + "/")
        rows = wait_for(browser, lambda b: _queue_rows(b) if len(_queue_rows(b)) >= len(keys.ALL_QUEUES) else None,
                        message="the queues table did not list the plugwatch queues")
        browser.save_screenshot(str(shots / "1-queues.png"))
        assert set(rows) >= set(keys.ALL_QUEUES), rows
        assert _cell_text(rows[keys.DEAD_LETTER_QUEUE], "td.failed") == "1"

        rows[keys.DEAD_LETTER_QUEUE].find_element(By.CSS_SELECTOR, "td.failed a").click()
        row = wait_for(browser, lambda b: _job_row(b, job_id), message=f"dead letter {job_id} not listed")
        browser.save_screenshot(str(shots / "2-dead-letters.png"))
        assert f"vehicle.plugged_in_at_home {EVENT_ID} -> {hook}" in row.text
        assert "HTTP 400: rejected by the sink" in row.text
        assert _cell_text(row, "span.end_date") == "Failed 3 days ago"
        assert _cell_text(row, "span.creation_date") == "3 days ago"

        seen = len(received.requests)
        row.find_element(By.CSS_SELECTOR, "[data-role=requeue-job-btn]").click()
        (delivered,) = received.wait_for(seen + 1, timeout=30)[seen:]
        assert delivered.webhook_id == EVENT_ID
        assert delivered.body == body  # the same bytes, signed again

        browser.refresh()
        wait_for(browser, lambda b: "No jobs." in b.find_element(By.CSS_SELECTOR, "table#jobs tbody").text,
                 message="the dead letter is still listed after its Requeue was delivered")
        browser.save_screenshot(str(shots / "3-requeued.png"))
    assert deadletters.list_all(real_redis) == []


def _queue_rows(browser: WebDriver) -> dict[str, WebElement]:
    rows = browser.find_elements(By.CSS_SELECTOR, "table#queues tr[data-role=queue]")
    return {row.find_element(By.CSS_SELECTOR, "td").text: row for row in rows}


def _job_row(browser: WebDriver, job_id: str) -> WebElement | None:
    rows = browser.find_elements(By.CSS_SELECTOR, f"table#jobs tr[data-job-id='{job_id}']")
    return rows[0] if rows and rows[0].is_displayed() else None


def _cell_text(element: WebElement, selector: str) -> str:
    return str(element.find_element(By.CSS_SELECTOR, selector).text.strip())
