"""`plugwatch up` (what `./scripts/run` runs): the whole system on this machine, in one command.

Redis (REDIS_URL, refused if it does not answer; unset or `--private-redis`: a private redis-server, else
fakeredis in-process), the receiver, worker(s), rq-dashboard, a demo sink that prints each emitted event, and a
short simulated Enode scenario with a new seed each run: its webhooks, and its Enode API (`enode_demo`: the
same vehicles and chargers, for `enode reconcile` and the worker's look-ups). `<logs>/env` holds the `export`
lines that point another shell's plugwatch commands at it. Ctrl-C stops everything it started. With `--enode`,
no simulator: point a real Enode webhook at the receiver instead. A busy port or a Redis that does not answer:
one line naming it (and the flag to change), exit 1.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import NoReturn

import click
import orjson
import redis

from plugwatch import command, epoch, redis_clients
from plugwatch.settings import shown_redis_url
from plugwatch.startup import RUNTIME_FAILURE_EXIT
from simulator.deliveries import Delivery, Plan, plan_deliveries
from simulator.demo_sink import create_sink
from simulator.enode_demo import DEMO_CLIENT_ID, demo_enode
from simulator.fake_enode import TOKEN_PATH, FakeEnode
from simulator.sender import SendOptions, send_all
from simulator.stack import (
    Stack,
    free_port,
    port_free,
    provide_redis,
    redis_problem,
    serve_app,
    venv_script,
    wait_http,
)
from simulator.stories import Scenario, build_scenario
from simulator.truth import expected_events


@click.command("up")
@click.option("--users", default=3, show_default=True, help="Simulated Enode users in the demo scenario.")
@click.option("--seed", type=int, default=None, show_default="a new one each run",
              help="The demo scenario's seed (printed in the banner: the same seed replays the same run).")
@click.option("--rate", default=15.0, show_default=True, help="Simulated events per second (readable output).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, envvar="PORT", show_default="$PORT or 8000",
              help="Receiver port (0: any free one).")
@click.option("--dashboard-port", type=click.IntRange(0, 65535), default=9181, show_default=True,
              help="rq-dashboard's port (0: any free one).")
@click.option("--sink-port", type=click.IntRange(0, 65535), default=0, show_default="any free one",
              help="The demo sink's port.")
@click.option("--dashboard/--no-dashboard", default=True, help="Run rq-dashboard.")
@click.option("--enode", is_flag=True, help="Real Enode: needs ENODE_WEBHOOK_SECRET; no simulator.")
@click.option("--public-url", default=None, help="With --enode: the public https URL that reaches --port.")
@click.option("--private-redis", is_flag=True, help="Start a private redis-server even if REDIS_URL is set.")
@click.option("--fakeredis", "fake", is_flag=True, help="Use fakeredis in-process instead of any other Redis.")
@click.option("--logs", "log_dir", type=click.Path(path_type=Path), default=None,
              help="Where the processes' logs and the env file go (default: a new temporary directory).")
def up(users: int, seed: int | None, rate: float, workers: int, port: int, dashboard_port: int, sink_port: int,
       dashboard: bool, enode: bool, public_url: str | None, private_redis: bool, fake: bool,
       log_dir: Path | None) -> None:
    """Run Redis, receiver, worker(s), rq-dashboard, a printing sink and a simulated scenario; Ctrl-C stops all.

    Writes <logs>/env: `source` it in another terminal and every plugwatch command talks to this demo.
    """
    command.settings()  # an unusable setting: one line, exit 2, before anything starts
    env = dict(command.environment())  # what every process it starts is given, with the demo's defaults
    if enode and not env.get("ENODE_WEBHOOK_SECRET"):
        raise click.UsageError("--enode needs ENODE_WEBHOOK_SECRET: the secret you give Enode's POST /webhooks")
    if env.get("REDIS_URL") and not (private_redis or fake) and (problem := redis_problem(env["REDIS_URL"])):
        _refuse(f"cannot reach Redis at {shown_redis_url(env['REDIS_URL'])} (REDIS_URL): {problem.rstrip('.')}; "
                "start it, or unset REDIS_URL (or pass --private-redis) for a private one")
    ports = Ports(receiver=_port(port, "the receiver", "--port"), sink=_port(sink_port, "the demo sink", "--sink-port"),
                  dashboard=_port(dashboard_port, "rq-dashboard", "--dashboard-port") if dashboard else None)
    env.setdefault("ENODE_WEBHOOK_SECRET", secrets.token_hex(32))
    env.setdefault("DOWNSTREAM_WEBHOOK_SECRET", "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
    env.setdefault("PLUGWATCH_LOG_FORMAT", "json")
    if seed is None:
        seed = 0 if enode else demo_seed()
    demo = Demo(users, seed, rate, enode, public_url)
    stack = Stack(log_dir or Path(tempfile.mkdtemp(prefix="plugwatch-up-")))
    for sig in (signal.SIGTERM, signal.SIGHUP):  # a closed terminal stops everything too
        signal.signal(sig, _raise_interrupt)
    try:
        _run(stack, env, demo, ports, workers, private_redis, fake)
    except KeyboardInterrupt:
        click.echo("\nup: stopping…", err=True)
    except RuntimeError as error:  # something it started did not come up
        click.echo(f"plugwatch up: {error}; stopping the rest", err=True)
        raise SystemExit(RUNTIME_FAILURE_EXIT) from None
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second Ctrl-C must not cut the clean-up
            signal.signal(sig, signal.SIG_IGN)
        stack.stop()
        click.echo("up: everything stopped", err=True)


@dataclass(frozen=True)
class Ports:
    receiver: int
    sink: int
    dashboard: int | None  # None: no dashboard


@dataclass(frozen=True)
class Demo:
    users: int
    seed: int
    rate: float
    enode: bool
    public_url: str | None


def _refuse(message: str) -> NoReturn:
    click.echo(f"plugwatch up: {message}", err=True)
    raise SystemExit(RUNTIME_FAILURE_EXIT)


def _port(port: int, what: str, flag: str) -> int:
    """`port`, or any free one for 0; a port something already listens on is refused, naming the flag."""
    if port == 0:
        return free_port()
    if not port_free(port):
        _refuse(f"port {port} ({what}) is in use: stop what listens there, or choose another with {flag} N "
                "(0: any free port)" + (" or --no-dashboard" if flag == "--dashboard-port" else ""))
    return port


def demo_seed(draw: Callable[[], int] = lambda: secrets.randbelow(1_000_000)) -> int:
    """A new seed whose first simulated user's vehicle plugs in at home, what a newcomer waits for: about one
    user's story in 170 emits no event at all. (The first user's story is the same whatever `--users`.)"""
    while True:
        seed = draw()
        if any(e.type == "vehicle.plugged_in_at_home" for e in expected_events(build_scenario(1, seed).events)):
            return seed


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _run(stack: Stack, env: dict[str, str], demo: Demo, ports: Ports, workers: int, private: bool,
         fake: bool) -> None:
    url, how = provide_redis(stack, env, private, fake)
    env["REDIS_URL"] = url
    if how != "REDIS_URL":  # a private Redis holds RQ too
        env.pop("RQ_REDIS_URL", None)
    queues_url = env.get("RQ_REDIS_URL") or url
    sink_url = _start_sink(stack, env["DOWNSTREAM_WEBHOOK_SECRET"], ports.sink, url)
    scenario = None if demo.enode else build_scenario(demo.users, demo.seed)
    hook = (f"http://127.0.0.1:{ports.receiver}/webhooks/enode", env["ENODE_WEBHOOK_SECRET"].split(",")[0].strip())
    enode_api = None if scenario is None else _start_enode(stack, env, scenario, hook)
    extra = [u for u in env.get("DOWNSTREAM_WEBHOOK_URLS", "").split(",") if u.strip()]
    env["DOWNSTREAM_WEBHOOK_URLS"] = ",".join([sink_url, *extra])
    env["PORT"] = str(ports.receiver)
    host = "0.0.0.0" if demo.enode else "127.0.0.1"  # noqa: S104 (real Enode must reach it)
    # as the Procfile runs it: with the limits against slow clients
    stack.spawn("receiver", [sys.executable, "-m", "receiver", "--host", host, "--port", env["PORT"]], env)
    for index in range(workers):
        metrics = {"PLUGWATCH_METRICS_PORT": "9100" if index == 0 and port_free(9100) else "0"}
        stack.spawn(f"worker-{index}", [sys.executable, "-m", "worker", "--name", f"up-{os.getpid()}-{index}"],
                    env | metrics)
    base = f"http://127.0.0.1:{ports.receiver}"
    if ports.dashboard is not None:
        stack.spawn("rq-dashboard", [venv_script("rq-dashboard"), "--redis-url",
                                     redis_clients.dashboard_url(queues_url), "--port", str(ports.dashboard),
                                     "--bind", "127.0.0.1"], env)
        wait_http(f"http://127.0.0.1:{ports.dashboard}/",
                  f"rq-dashboard did not start on port {ports.dashboard} (see {stack.log_dir}/rq-dashboard.log)")
    wait_http(base + "/readyz", f"the receiver did not get ready at {base} (see {stack.log_dir}/receiver.log)")
    env_file = _write_env_file(stack.log_dir, env)
    _banner(how, url, base, sink_url, ports.dashboard, demo, env, env_file)
    if scenario is not None and enode_api is not None:
        _simulate(base + "/webhooks/enode", env["ENODE_WEBHOOK_SECRET"], demo, scenario, enode_api)
    while True:
        time.sleep(0.5)
        if stack.exited():
            names = ", ".join(stack.exited())
            raise RuntimeError(f"{names} exited (see {stack.log_dir}/<name>.log)")


EXPORTED = ("REDIS_URL", "RQ_REDIS_URL", "PLUGWATCH_PARTITIONS", "ENODE_WEBHOOK_SECRET", "DOWNSTREAM_WEBHOOK_URLS",
            "DOWNSTREAM_WEBHOOK_SECRET", "PORT", "ENODE_CLIENT_ID", "ENODE_CLIENT_SECRET", "ENODE_API_URL",
            "ENODE_TOKEN_URL")


def exports(env: Mapping[str, str]) -> str:
    """The `export` lines (shell-quoted) that point a shell's plugwatch commands at this demo."""
    return "".join(f"export {name}={shlex.quote(env[name])}\n" for name in EXPORTED if env.get(name))


def _write_env_file(log_dir: Path, env: Mapping[str, str]) -> Path:
    path = log_dir / "env"
    path.touch(mode=0o600)
    path.chmod(0o600)  # it holds the demo's secrets
    path.write_text("# plugwatch up: `source` this file, then plugwatch commands talk to the running demo\n"
                    + exports(env))
    return path


def _start_sink(stack: Stack, secret: str, port: int, redis_url: str) -> str:
    reader = redis_clients.probe(redis_url, 1.0)
    stack.cleanups.append(reader.close)

    def sequence_base() -> int:  # printed sequences count from the epoch's base, as the core numbers them
        try:
            current = epoch.read(reader)
        except redis.RedisError:
            return 0
        return current.sequence_base if current else 0

    app = create_sink(secret, lambda line: click.echo(f"sink: {line}"), sequence_base)
    return serve_app(stack, app, port, "the demo sink (--sink-port)") + "/events"


def _start_enode(stack: Stack, env: dict[str, str], scenario: Scenario, webhook: tuple[str, str]) -> FakeEnode:
    """The simulated Enode API on a free port; `env` (every process's) gets its credentials and URLs."""
    env["ENODE_CLIENT_ID"], env["ENODE_CLIENT_SECRET"] = DEMO_CLIENT_ID, secrets.token_urlsafe(24)
    fake = demo_enode(scenario, env["ENODE_CLIENT_ID"], env["ENODE_CLIENT_SECRET"], webhook)
    url = serve_app(stack, fake.app, free_port(), "the simulated Enode API")
    env["ENODE_API_URL"], env["ENODE_TOKEN_URL"] = url, url + TOKEN_PATH
    return fake


def _banner(how: str, redis_url: str, base: str, sink_url: str, dashboard_port: int | None, demo: Demo,
            env: Mapping[str, str], env_file: Path) -> None:
    lines = [
        f"up: Redis        {shown_redis_url(redis_url)} ({how})",
        f"up: receiver     {base}/webhooks/enode   (health {base}/healthz, metrics {base}/metrics)",
        f"up: demo sink    {sink_url}   (prints every emitted event below)",
        "up: events also  Redis stream plugwatch:events",
    ]
    if dashboard_port is not None:
        lines.append(f"up: rq-dashboard http://127.0.0.1:{dashboard_port}")
    if demo.enode:
        target = (demo.public_url or "https://<your public URL>").rstrip("/") + "/webhooks/enode"
        lines.append(f"up: register with Enode: POST /webhooks {{url: {target}, secret: $ENODE_WEBHOOK_SECRET}}")
    else:
        lines.append(f"up: scenario     {demo.users} users, seed {demo.seed} (--seed {demo.seed} repeats it)")
        lines.append(f"up: Enode API    {env['ENODE_API_URL']}   (simulated: the scenario's vehicles and chargers)")
    lines.append(f"up: logs         {env_file.parent}/*.log")
    lines.append(f"up: in another terminal: source {shlex.quote(str(env_file))}   (then plugwatch status, "
                 "quarantine list, dead-letters urls, enode reconcile, simulate --users 2 --seed 7, …); it holds:")
    lines.extend("  " + line for line in exports(env).splitlines())
    lines.append("up: Ctrl-C stops everything")
    click.echo("\n".join(lines), err=True)


def _simulate(url: str, secret: str, demo: Demo, scenario: Scenario, enode_api: FakeEnode) -> None:
    def sending(delivery: Delivery) -> None:  # Enode's API shows a change before its webhook arrives
        enode_api.observe(orjson.loads(delivery.body))

    deliveries = plan_deliveries(scenario.events, Plan(min_batch=1, max_batch=5, heartbeat_every=10,
                                                       test_event=True, seed=demo.seed))
    click.echo(f"up: simulating {demo.users} Enode users: {len(scenario.events)} events in {len(deliveries)} "
               "deliveries", err=True)
    report = asyncio.run(send_all(url, secret, deliveries, SendOptions(concurrency=1, rate=demo.rate),
                                  on_sending=sending))
    click.echo(f"up: simulation sent ({report.accepted} deliveries accepted); still running, Ctrl-C to stop",
               err=True)
