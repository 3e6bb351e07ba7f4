"""`plugwatch up` (what `./scripts/run` runs): the whole system on this machine, in one command.

Redis (REDIS_URL if reachable, else a private redis-server, else fakeredis in-process), the receiver, worker(s),
rq-dashboard, a demo sink that prints each emitted event, and a short simulated Enode scenario. Ctrl-C stops
everything it started. With `--enode`, no simulator: point a real Enode webhook at the receiver instead.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

import click
import uvicorn

from plugwatch import command, redis_clients
from simulator.deliveries import Plan, plan_deliveries
from simulator.demo_sink import create_sink
from simulator.sender import SendOptions, send_all
from simulator.stack import Stack, free_port, port_free, provide_redis, venv_script, wait_http
from simulator.stories import build_scenario


@click.command("up")
@click.option("--users", default=3, show_default=True, help="Simulated Enode users in the demo scenario.")
@click.option("--seed", default=1, show_default=True, help="The demo scenario's seed.")
@click.option("--rate", default=15.0, show_default=True, help="Simulated events per second (readable output).")
@click.option("--workers", default=1, show_default=True, help="Worker processes.")
@click.option("--port", type=int, default=8000, envvar="PORT", show_default="$PORT or 8000",
              help="Receiver port (a free one if taken).")
@click.option("--dashboard/--no-dashboard", default=True, help="Run rq-dashboard on port 9181.")
@click.option("--enode", is_flag=True, help="Real Enode: needs ENODE_WEBHOOK_SECRET; no simulator.")
@click.option("--public-url", default=None, help="With --enode: the public https URL that reaches --port.")
@click.option("--fakeredis", "fake", is_flag=True, help="Use fakeredis in-process even if redis-server exists.")
@click.option("--logs", "log_dir", type=click.Path(path_type=Path), default=None,
              help="Where the processes' logs go (default: a new temporary directory).")
def up(users: int, seed: int, rate: float, workers: int, port: int, dashboard: bool, enode: bool,
       public_url: str | None, fake: bool, log_dir: Path | None) -> None:
    """Run Redis, receiver, worker(s), rq-dashboard, a printing sink and a simulated scenario; Ctrl-C stops all."""
    env = dict(command.environment())  # what every process it starts is given, with the demo's defaults
    if enode and not env.get("ENODE_WEBHOOK_SECRET"):
        raise click.UsageError("--enode needs ENODE_WEBHOOK_SECRET: the secret you give Enode's POST /webhooks")
    env.setdefault("ENODE_WEBHOOK_SECRET", secrets.token_hex(32))
    env.setdefault("DOWNSTREAM_WEBHOOK_SECRET", "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
    env.setdefault("PLUGWATCH_LOG_FORMAT", "json")
    stack = Stack(log_dir or Path(tempfile.mkdtemp(prefix="plugwatch-up-")))
    for sig in (signal.SIGTERM, signal.SIGHUP):  # a closed terminal stops everything too
        signal.signal(sig, _raise_interrupt)
    try:
        _run(stack, env, users, seed, rate, workers, port, dashboard, enode, public_url, fake)
    except KeyboardInterrupt:
        click.echo("\nup: stopping…", err=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second Ctrl-C must not cut the clean-up
            signal.signal(sig, signal.SIG_IGN)
        stack.stop()
        click.echo("up: everything stopped", err=True)


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _run(stack: Stack, env: dict[str, str], users: int, seed: int, rate: float, workers: int, port: int,
         dashboard: bool, enode: bool, public_url: str | None, fake: bool) -> None:
    url, how = provide_redis(stack, env, fake)
    env["REDIS_URL"] = url
    sink_url = _start_sink(stack, env["DOWNSTREAM_WEBHOOK_SECRET"])
    extra = [u for u in env.get("DOWNSTREAM_WEBHOOK_URLS", "").split(",") if u.strip()]
    env["DOWNSTREAM_WEBHOOK_URLS"] = ",".join([sink_url, *extra])
    port = port if port_free(port) else free_port()
    host = "0.0.0.0" if enode else "127.0.0.1"  # noqa: S104 (real Enode must reach it)
    stack.spawn("receiver", [sys.executable, "-m", "receiver", "--host", host, "--port", str(port)],
                env | {"PORT": str(port)})  # as the Procfile runs it: with the limits against slow clients
    for index in range(workers):
        metrics = {"PLUGWATCH_METRICS_PORT": "9100" if index == 0 and port_free(9100) else "0"}
        stack.spawn(f"worker-{index}", [sys.executable, "-m", "worker", "--name", f"up-{os.getpid()}-{index}"],
                    env | metrics)
    if dashboard and port_free(9181):
        stack.spawn("rq-dashboard", [venv_script("rq-dashboard"), "--redis-url", redis_clients.dashboard_url(url),
                                     "--port", "9181", "--bind", "127.0.0.1"], env)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/readyz")
    _banner(how, url, base, sink_url, dashboard, enode, public_url, env, stack.log_dir)
    if not enode:
        _simulate(base + "/webhooks/enode", env["ENODE_WEBHOOK_SECRET"], users, seed, rate)
    while True:
        time.sleep(0.5)
        if stack.exited():
            names = ", ".join(stack.exited())
            raise click.ClickException(f"{names} exited (see {stack.log_dir}/<name>.log); stopping the rest")


def _start_sink(stack: Stack, secret: str) -> str:
    port = free_port()
    config = uvicorn.Config(create_sink(secret, lambda line: click.echo(f"sink: {line}")), host="127.0.0.1",
                            port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="demo-sink", daemon=True)
    thread.start()

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=5)

    stack.cleanups.append(stop)
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}/events"


def _banner(how: str, redis_url: str, base: str, sink_url: str, dashboard: bool, enode: bool,
            public_url: str | None, env: dict[str, str], log_dir: Path) -> None:
    lines = [
        f"up: Redis        {redis_url} ({how})",
        f"up: receiver     {base}/webhooks/enode   (health {base}/healthz, metrics {base}/metrics)",
        f"up: demo sink    {sink_url}   (prints every emitted event below)",
        "up: events also  Redis stream plugwatch:events",
    ]
    if dashboard:
        lines.append("up: rq-dashboard http://127.0.0.1:9181")
    if enode:
        target = (public_url or "https://<your public URL>").rstrip("/") + "/webhooks/enode"
        lines.append(f"up: register with Enode: POST /webhooks {{url: {target}, secret: $ENODE_WEBHOOK_SECRET}}")
    else:
        lines.append(f"up: demo Enode secret {env['ENODE_WEBHOOK_SECRET'][:8]}… (try: plugwatch simulate "
                     f"--url {base}/webhooks/enode --secret …)")
    lines.append(f"up: logs         {log_dir}/*.log")
    lines.append("up: Ctrl-C stops everything")
    click.echo("\n".join(lines), err=True)


def _simulate(url: str, secret: str, users: int, seed: int, rate: float) -> None:
    scenario = build_scenario(users, seed)
    deliveries = plan_deliveries(scenario.events, Plan(min_batch=1, max_batch=5, heartbeat_every=10,
                                                       test_event=True, seed=seed))
    click.echo(f"up: simulating {users} Enode users: {len(scenario.events)} events in {len(deliveries)} "
               "deliveries", err=True)
    report = asyncio.run(send_all(url, secret, deliveries, SendOptions(concurrency=1, rate=rate)))
    click.echo(f"up: simulation sent ({report.accepted} deliveries accepted); still running, Ctrl-C to stop",
               err=True)
