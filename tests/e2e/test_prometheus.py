"""A real Prometheus runs deploy/prometheus/ (scrape config and alert rules, `for:` shortened) against a real
receiver (uvicorn), two real workers (`python -m worker`), a real redis-server and a real downstream sink,
and answers through its HTTP API:

- every scrape target is up;
- every PromQL expression of the Grafana dashboard and of the alert rules parses and evaluates, every
  dashboard query returns series for the traffic sent, and every rule evaluates without error;
- a stopped sink makes PlugwatchDownstreamUrlPaused fire; one stopped worker is PlugwatchTargetDown but not
  PlugwatchNoWorkers; stopping both makes PlugwatchNoWorkers fire; each within its shortened `for:`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from plugwatch import dead_letters as deadletters
from simulator.deliveries import Delivery, Plan, plan_deliveries
from simulator.stories import build_scenario
from tests.conftest import TEST_DOWNSTREAM_SECRET, TEST_SECRET
from tests.e2e.harness import send
from tests.support import manifests
from tests.support.prometheus import PrometheusServer, PromQLError, as_grafana_runs, find_prometheus, scrape_config
from tests.support.servers import Process, RedisServer, base_env, free_port, start_receiver
from tests.support.sinks import Reply, Sink, SinkServer
from tests.support.workers import start_worker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("observability"),
    pytest.mark.skipif(find_prometheus() is None, reason="no prometheus binary (Debian's 'prometheus' package; "
                       "./scripts/test installs it as root)"),
]
FOR_SECONDS = 2  # every alert's `for:` in the generated rules
ALERT_DEADLINE = FOR_SECONDS + 15  # pending -> firing, plus scrapes, evaluations and the delivery's first retry
RATE_WINDOW = "30s"  # Grafana's $__rate_interval, several one-second scrapes long
READ_TIMEOUT = 2  # the workers' per-attempt read timeout (a hanging sink's attempt lasts this long)


@dataclass
class Observed:
    prometheus: PrometheusServer
    sink: SinkServer
    receiver_url: str
    workers: list[Process]


def eventually(check: Callable[[], bool], timeout: float, explain: Callable[[], str]) -> None:
    """Poll `check` until it holds; after `timeout` seconds fail with `explain()` (computed then)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(explain())
        time.sleep(0.2)


def fires(prometheus: PrometheusServer, alert: str, within: float = ALERT_DEADLINE) -> None:
    eventually(lambda: alert in prometheus.firing(), within,
               lambda: f"{alert} not firing: {prometheus.alerts()}")


def _traffic(users: int, seed: int) -> list[Delivery]:
    scenario = build_scenario(users, seed=seed)
    return plan_deliveries(scenario.events, Plan(max_batch=10, heartbeat_every=5, test_event=True, seed=seed))


@pytest.fixture(scope="module")
def observed(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    """The whole system under Prometheus, after signed deliveries (and one dead letter) and two deliveries
    with bad signatures."""
    logs = tmp_path_factory.mktemp("prometheus-e2e")
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    redis_server.client().flushall()
    sink = Sink()
    # A dead letter (a 400 is retried now; only the max age or a 410 makes one): what the alert fires on
    deadletters.add(redis_server.client(), "http://gone.example/hook", b'{"id": "evt_x"}', reason="HTTP 400",
                    ttl=600, event_id="evt_x", event_type="control.failed")
    with SinkServer(sink) as sink_server:
        hook = sink_server.url + "/hook"
        receiver, receiver_url = start_receiver(
            base_env(REDIS_URL=redis_server.url, ENODE_WEBHOOK_SECRET=TEST_SECRET), logs / "receiver.log")
        ports = [free_port(), free_port()]
        workers = [start_worker(redis_server.url, logs / f"worker-{i}.log", PLUGWATCH_METRICS_PORT=str(port),
                                DOWNSTREAM_WEBHOOK_URLS=hook, DOWNSTREAM_WEBHOOK_SECRET=TEST_DOWNSTREAM_SECRET,
                                PLUGWATCH_DELIVERY_READ_TIMEOUT_SECONDS=str(READ_TIMEOUT))
                   for i, port in enumerate(ports)]
        targets = {"plugwatch-receiver": [receiver_url.removeprefix("http://")],
                   "plugwatch-worker": [f"127.0.0.1:{port}" for port in ports]}
        config = scrape_config(targets, logs / "prometheus", for_seconds=FOR_SECONDS)
        try:
            with PrometheusServer(config, logs / "prometheus") as prometheus:
                report = send(receiver_url + "/webhooks/enode", _traffic(users=8, seed=1))
                assert report.ok, report
                for signature in ("sha1=" + "0" * 40, None):
                    headers = {"x-enode-signature": signature} if signature else {}
                    response = httpx.post(receiver_url + "/webhooks/enode", content=b"[]", headers=headers)
                    assert response.status_code == 401
                sink.wait_for(3, accepted=True, timeout=30)
                yield Observed(prometheus, sink_server, receiver_url, workers)
        finally:
            for process in [*workers, receiver]:
                process.stop()


def test_every_target_is_up(observed: Observed) -> None:
    def all_up() -> bool:
        targets = observed.prometheus.targets()
        return len(targets) == 3 and all(target["health"] == "up" for target in targets)

    eventually(all_up, 20, lambda: f"targets not all up: {observed.prometheus.targets()}")
    jobs = {target["labels"]["job"] for target in observed.prometheus.targets()}
    assert jobs == {"plugwatch-receiver", "plugwatch-worker"}


def test_every_dashboard_query_parses_and_returns_series(observed: Observed) -> None:
    queries = {as_grafana_runs(expression, RATE_WINDOW) for expression in manifests.dashboard_expressions()}
    assert len(queries) > 20
    empty: list[str] = []

    def every_query_has_series() -> bool:
        empty[:] = [query for query in sorted(queries) if not observed.prometheus.query(query)]
        return not empty

    eventually(every_query_has_series, 30, lambda: f"dashboard queries without series: {empty}")


def test_every_alert_expression_parses_and_every_rule_evaluates(observed: Observed) -> None:
    rules = manifests.alert_rules()
    for rule in rules:
        observed.prometheus.query(rule["expr"])  # PromQLError on a 400 (parse) or 422 (evaluation)
    with pytest.raises(PromQLError):
        observed.prometheus.query("max(plugwatch_dead_letters")  # the check itself can fail

    def evaluated() -> bool:
        loaded = observed.prometheus.rules()
        return len(loaded) == len(rules) and all(rule["lastEvaluation"] > "2000" for rule in loaded)

    eventually(evaluated, 15, lambda: f"rules not loaded and evaluated: {observed.prometheus.rules()}")
    unhealthy = [(r["name"], r["health"], r.get("lastError")) for r in observed.prometheus.rules()
                 if r["health"] != "ok"]
    assert not unhealthy


def test_dead_letter_alert_fires_for_the_rejected_event(observed: Observed) -> None:
    fires(observed.prometheus, "PlugwatchDeadLetters")


def test_a_hanging_sink_pauses_the_url_within_the_for_window(observed: Observed) -> None:
    """A sink that accepts and never answers: each attempt lasts the read timeout, between short pauses;
    the paused-URL gauge must hold through the attempts, or the alert fires only once a pause outlasts `for:`."""
    prometheus, sink = observed.prometheus, observed.sink.sink
    assert "PlugwatchDownstreamUrlPaused" not in prometheus.active()
    sink.set_default(Reply(200, delay=60))
    seen = len(sink.requests)
    report = send(observed.receiver_url + "/webhooks/enode", _traffic(users=2, seed=2))
    assert report.ok, report
    sink.wait_for(seen + 1, timeout=15)
    fires(prometheus, "PlugwatchDownstreamUrlPaused", within=READ_TIMEOUT + FOR_SECONDS + 5)

    sink.set_default(Reply(200))
    eventually(lambda: "PlugwatchDownstreamUrlPaused" not in prometheus.active(), ALERT_DEADLINE,
               lambda: f"PlugwatchDownstreamUrlPaused still active after the sink recovered: {prometheus.alerts()}")


def test_a_stopped_sink_pauses_the_url(observed: Observed) -> None:
    prometheus = observed.prometheus
    assert "PlugwatchDownstreamUrlPaused" not in prometheus.active()
    observed.sink.down()
    report = send(observed.receiver_url + "/webhooks/enode", _traffic(users=2, seed=3))
    assert report.ok, report
    started = time.monotonic()
    fires(prometheus, "PlugwatchDownstreamUrlPaused")
    assert time.monotonic() - started >= FOR_SECONDS  # pending first, for its `for:`


def test_one_stopped_worker_is_a_target_down_and_every_stopped_worker_is_no_workers(observed: Observed) -> None:
    """Stops the workers: runs last in this module."""
    prometheus = observed.prometheus
    # Both workers are up; a scrape that missed them both on a loaded machine may leave an alert pending for a
    # moment, so the start waits for that to clear (the transitions below are what the test checks).
    eventually(lambda: not {"PlugwatchNoWorkers", "PlugwatchTargetDown"} & prometheus.active(), ALERT_DEADLINE,
               lambda: f"a worker alert is active while both workers run: {prometheus.alerts()}")
    first, second = observed.workers
    first.stop()
    fires(prometheus, "PlugwatchTargetDown")
    assert "PlugwatchNoWorkers" not in prometheus.active()  # one worker is still up
    second.stop()
    fires(prometheus, "PlugwatchNoWorkers")
