"""Every benchmark in one run; writes bench/RESULTS.md with the machine's description and the goal table.

    .venv/bin/python -m bench.run_all [--quick]

Runs, one after the other (each starts and stops its own redis-server and processes):
  bench/receiver.py  receiver deliveries/s, latency and CPU per request beside a bare 200 endpoint on the
                     same uvicorn configuration (and the load generator's own ceiling); then again with the
                     data on a 3-primary Redis Cluster, 12 partitions (`--cluster 12`)
  bench/worker.py    worker events/s beside a plain Redis consumer loop and trivial RQ jobs; then one
                     partition's drain on a 3-primary Redis Cluster beside the pure core (`--cluster 12`)
  bench/delivery.py  one worker process's delivery events/s to one URL (concurrency 16) beside a bare
                     aiohttp client at the same concurrency; the time to drain a 100,000-event backlog
  bench/e2e.py       end-to-end latency at 500 events/s for 60 s, RSS, Redis memory per vehicle, growth;
                     then the latency run again with two workers, with a 0.5 s ingest drain budget, with 6
                     partitions on one Redis, and on a 3-primary Redis Cluster (6 partitions and 6 workers; 12
                     partitions and 3 workers; RQ on a redis-server of its own)
  bench/state_memory.py  Redis memory of a vehicle with its charger by remembered actions (0, 12, 20, 40)
  bench/dedupe_memory.py  Redis memory per dedupe mark (1M marks) beside the previous key-per-delivery layout
  bench/partition_memory.py  Redis memory of a partition at rest (PLUGWATCH_PARTITIONS 16 and 256 beside 1)
Each one's full output is kept in RESULTS.md; the headline figures are put beside their goals.
`--quick` shortens every run (a smoke test of this script, not figures to publish).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                                   check=False).stdout.strip()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {"CPU": cpu, "cores (usable)": f"{len(os.sched_getaffinity(0))} of {os.cpu_count()}",
            "RAM": f"{psutil.virtual_memory().total / 2**30:.1f} GiB", "Python": sys.version.split()[0],
            "Redis": redis_version, "OS": platform.platform(), "load average at start (1, 5, 15 min)": load,
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


def run(name: str, args: list[str], timeout: float) -> tuple[str, float]:
    print(f"== {name}: {' '.join(args)}", flush=True)
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout, check=False)
        output = done.stdout + (f"\n[stderr]\n{done.stderr[-3000:]}" if done.returncode else "")
    except subprocess.TimeoutExpired as exc:
        output = f"TIMED OUT after {timeout:.0f} s\n{exc.stdout or ''}"
    seconds = time.monotonic() - started
    print(output[-1500:], flush=True)
    return output, seconds


def _find(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    return match.group(1) if match else "n/a"


_RATE = r"\s+\d+ events in\s+[\d.]+ s =\s+([\d,]+)"
PATTERNS = {
    "receiver_rps": r"receiver\s+(\d+) req/s",
    "bare_rps": r"bare\s+(\d+) req/s",
    "ratio": r"throughput: ([\d.]+%)",
    "receiver_p99": r"receiver p99 ([\d.]+ ms)",
    "cpu": r"(server CPU per request: .*?); client ceiling",
    "client": r"(client ceiling: [^\n]*)",
    "drain100": r"100-event deliveries \(in process\)" + _RATE,
    "drain100_cpu": r"100-event deliveries \(in process, per CPU second\)" + _RATE,
    "drain1": r"1-event deliveries \(in process\)" + _RATE,
    "core100": r"pure core only[^\n]*per CPU second" + _RATE,
    "drain_share": r"100-event drain / pure core, per CPU second\s+([\d.]+)",
    "cluster_drain": r"cluster drain, 100-event deliveries \(in process\)" + _RATE,
    "cluster_drain_cpu": r"cluster drain, 100-event deliveries \(in process, per CPU second\)" + _RATE,
    "cluster_share": r"cluster drain / pure core, per CPU second\s+([\d.]+)",
    "loop100": r"\(b\)[^\n]*\n\s+100-event deliveries" + _RATE,
    "loop1": r"(?s)\(b\).*?\n\s+1-event deliveries" + _RATE,
    "delivery_bare": r"\(a\) bare \w+ client[^\n]*?(\d+) events/s",
    "delivery_worker": r"\(b\) one worker process\s+(\d+) events/s",
    "delivery_ratio": r"ratio \(b\)/\(a\) = ([\d.]+)",
    "delivery_backlog": r"\(c\) (\d+-event backlog drained in [\d.]+ s)",
    "delivery_slow": r"\(d\) (sink answering after .*)",
}


def state_memory_row(output: str) -> tuple[str, str, str, str]:
    """bench/state_memory.py's figure at 20 remembered actions, beside the same state without actions."""
    rows = dict(re.findall(r"^\s+(\d+)\s+\d+ B\s+(\d+) B", output, re.MULTILINE))
    return ("Redis memory per vehicle with its charger, 20 remembered actions",
            f"{rows.get('20', 'n/a')} B (MEMORY USAGE)", f"no actions: {rows.get('0', 'n/a')} B", "≤ 1 KB")


def delivery_rows(output: str) -> list[tuple[str, str, str, str]]:
    """bench/delivery.py's figures beside the bare client measured in the same run."""
    d = {k: _find(PATTERNS[k], output) for k in ("delivery_bare", "delivery_worker", "delivery_ratio",
                                                  "delivery_backlog", "delivery_slow")}
    return [("delivery events/s to one URL, one worker process, concurrency 16",
             f"{d['delivery_worker']} events/s = {d['delivery_ratio']} of the bare client",
             f"bare aiohttp client, 16 tasks: {d['delivery_bare']} events/s", "≥ 3,000 and ≥ 50% of bare"),
            ("time to drain a backlog for one URL", d["delivery_backlog"], "—", "—"),
            ("delivery to a URL that answers slowly, concurrency 16 beside 1", d["delivery_slow"], "—", "—")]


def dedupe_memory_row(output: str) -> tuple[str, str, str, str]:
    """bench/dedupe_memory.py's figure, beside the previous layout measured in the same run."""
    match = re.search(r"\(([\d.]+) B used_memory, ([\d.]+) B MEMORY USAGE; previous layout ([\d.]+) B / ([\d.]+) B",
                      output)
    used, usage, old_used, old_usage = match.groups() if match else ("n/a",) * 4
    return ("Redis memory per remembered delivery (dedupe mark), 1M marks",
            f"{used} B (used_memory), {usage} B (MEMORY USAGE)",
            f"previous layout, a key per delivery: {old_used} B / {old_usage} B", "≤ 24 B")


def goal_rows(receiver: str, worker: str, e2e: dict[str, Any],
              state_memory: str = "", dedupe_memory: str = "") -> list[tuple[str, str, str, str]]:
    """(figure, measured, ceiling measured in the same run, goal)."""
    best = _best(receiver)
    r = {k: _find(PATTERNS[k], best if k.endswith("rps") else receiver) for k in
         ("receiver_rps", "bare_rps", "ratio", "receiver_p99", "cpu", "client")}
    w = {k: _find(PATTERNS[k], worker) for k in ("drain100", "drain100_cpu", "drain1", "loop100", "loop1",
                                                  "core100", "drain_share")}
    share = f"{float(w['drain_share']):.0%}" if w["drain_share"] != "n/a" else "n/a"
    rows = [
        ("receiver deliveries/s vs a bare 200 endpoint",
         f"{r['receiver_rps']} req/s = {r['ratio']} of bare; p99 {r['receiver_p99']}",
         f"bare endpoint {r['bare_rps']} req/s (same uvicorn configuration); {r['cpu']}; {r['client']}",
         "≥ 50% of bare, p99 < 10 ms (32 clients)"),
        ("worker events/s, 100-event deliveries (one process)",
         f"{w['drain100']} wall clock, {w['drain100_cpu']} per CPU second",
         f"plain consumer loop {w['loop100']}", "≥ 30,000"),
        ("worker events per CPU second, 100-event deliveries, beside the pure core (orjson + decode + apply)",
         f"{share} of the pure core (median of rounds); best round {w['drain100_cpu']}",
         f"pure core {w['core100']} per CPU second (best round)",
         "≥ 85% of the pure core"),
        ("worker events/s, 1-event deliveries (one process)", f"{w['drain1']} wall clock",
         f"plain consumer loop {w['loop1']}", "≥ 1,000"),
    ]
    lat = e2e.get("latency", {})
    sink, commit = lat.get("sink", {}), lat.get("commit", {})
    rows.append(("end-to-end latency, POST accepted → sink received, "
                 f"{lat.get('achieved_rate', 0):.0f} events/s for {lat.get('send_seconds', 0):.0f} s",
                 f"p50 {sink.get('p50_ms', float('nan')):.0f} ms, p99 {sink.get('p99_ms', float('nan')):.0f} ms",
                 f"→ committed to plugwatch:events: p50 {commit.get('p50_ms', float('nan')):.0f} ms, "
                 f"p99 {commit.get('p99_ms', float('nan')):.0f} ms", "p50 < 25 ms, p99 < 100 ms"))
    mem = e2e.get("memory", {})
    last = (mem.get("rows") or [{}])[-1]
    rows.append((f"Redis memory per tracked vehicle at {last.get('vehicles', 0):,} vehicles",
                 f"{last.get('memory_usage_per_vehicle', 0):.0f} B (MEMORY USAGE), "
                 f"{last.get('used_memory_per_vehicle', 0):.0f} B (used_memory)",
                 f"one 1-byte key per user: {mem.get('floor_one_byte_key', 0) * mem.get('users_per_vehicle', 0):.0f} B"
                 " per vehicle", "≤ 1 KB"))
    rows.append(state_memory_row(state_memory))
    rows.append(dedupe_memory_row(dedupe_memory))
    rss = lat.get("rss_mb", {})
    rows.append(("receiver / worker resident memory under that load",
                 f"{rss.get('receiver', 0):.0f} MB / {rss.get('worker', 0):.0f} MB (max RSS)", "—",
                 "≤ 100 MB / ≤ 150 MB"))
    return rows


def cluster_receiver_row(output: str) -> tuple[str, str, str, str]:
    """bench/receiver.py --cluster's figures, beside the bare endpoint of that same run."""
    best = _best(output)
    r = {k: _find(PATTERNS[k], best if k.endswith("rps") else output) for k in
         ("receiver_rps", "bare_rps", "ratio", "receiver_p99", "cpu")}
    return ("receiver deliveries/s, data on a 3-primary Redis Cluster (12 partitions: each delivery's two users' "
            "events split by partition)",
            f"{r['receiver_rps']} req/s = {r['ratio']} of bare; p99 {r['receiver_p99']}",
            f"bare endpoint {r['bare_rps']} req/s (same run); {r['cpu']} (redis: the three primaries)",
            "≥ 50% of bare, p99 < 10 ms (32 clients)")


def cluster_worker_row(output: str) -> tuple[str, str, str, str]:
    """bench.worker --cluster's figures, beside the pure core of that same run."""
    w = {k: _find(PATTERNS[k], output) for k in ("cluster_drain", "cluster_drain_cpu", "core100", "cluster_share")}
    share = f"{float(w['cluster_share']):.0%}" if w["cluster_share"] != "n/a" else "n/a"
    return ("worker events/s, 100-event deliveries, one partition on a 3-primary Redis Cluster (one process)",
            f"{w['cluster_drain']} wall clock, {w['cluster_drain_cpu']} per CPU second = {share} of the pure core",
            f"pure core {w['core100']} per CPU second (same run)", "≥ 30,000 and ≥ 85% of the pure core")


def _best(receiver: str) -> str:
    return receiver.split("best of rounds", 1)[-1]


VARIANTS = {
    "e2e, 2 worker processes": ["--workers", "2"],
    "e2e, PLUGWATCH_INGEST_BUDGET_SECONDS=0.5": ["--set", "PLUGWATCH_INGEST_BUDGET_SECONDS=0.5"],
    "e2e, one Redis, 6 partitions, 6 worker processes": ["--set", "PLUGWATCH_PARTITIONS=6", "--workers", "6"],
    "e2e, Redis Cluster (3 primaries), 6 partitions, 6 worker processes": ["--cluster", "6", "--workers", "6"],
    "e2e, Redis Cluster (3 primaries), 12 partitions, 3 worker processes": ["--cluster", "12", "--workers", "3"],
}


def variant_rows(variants: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["", "## End-to-end latency: configuration variants (same rate and duration)", "",
             "| configuration | sink p50 | sink p99 | commit p50 | commit p99 | receiver / worker max RSS |",
             "|---|---|---|---|---|---|"]
    for name, figures in variants.items():
        lat = figures.get("latency", {})
        sink, commit, rss = lat.get("sink", {}), lat.get("commit", {}), lat.get("rss_mb", {})
        workers = " + ".join(f"{v:.0f}" for k, v in rss.items() if k.startswith("worker"))
        lines.append(f"| {name} | {sink.get('p50_ms', float('nan')):.0f} ms | {sink.get('p99_ms', float('nan')):.0f} ms"
                     f" | {commit.get('p50_ms', float('nan')):.0f} ms | {commit.get('p99_ms', float('nan')):.0f} ms"
                     f" | {rss.get('receiver', 0):.0f} / {workers} MB |")
    return lines


def write(machine_info: dict[str, str], outputs: dict[str, tuple[str, float]], e2e: dict[str, Any],
          variants: dict[str, dict[str, Any]]) -> None:
    lines = ["# plugwatch benchmark results", "", "Written by `python -m bench.run_all`; every figure below was "
             "measured in one run on this machine (shared with other work: see the load average).", "",
             "## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in machine_info.items()]
    lines += ["", "## Figures against the goals", "", "| figure | measured | ceiling / baseline (same run) | goal |",
              "|---|---|---|---|"]
    rows = [*goal_rows(outputs["receiver"][0], outputs["worker"][0], e2e, outputs["state_memory"][0],
                       outputs["dedupe_memory"][0]),
            cluster_receiver_row(outputs["receiver, Redis Cluster"][0]),
            cluster_worker_row(outputs["worker, Redis Cluster"][0]), *delivery_rows(outputs["delivery"][0])]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    growth = e2e.get("memory", {}).get("growth", {})
    if growth:
        lines += ["", "## Cost growth from 1,000 to 100,000 tracked vehicles", "",
                  "| vehicles stored | events/s (receiver + 1 worker) | worker CPU ms per event |", "|---|---|---|"]
        lines += [f"| {g['vehicles_stored']:,} | {g['events_per_s']:.0f} | {g['worker_cpu_ms_per_event']:.3f} |"
                  for g in growth.values()]
    for row in e2e.get("memory", {}).get("rows", []):
        lines.append(f"- {row['vehicles']:,} vehicles ({row['users']:,} users): "
                     f"{row['memory_usage_per_vehicle']:.0f} B/vehicle (MEMORY USAGE), "
                     f"{row['used_memory_per_vehicle']:.0f} B/vehicle (used_memory)")
    lines += variant_rows(variants)
    lines += ["", "## Full output", ""]
    for name, (text, seconds) in outputs.items():
        lines += [f"### {name} ({seconds:.0f} s)", "", "```", text.strip(), "```", ""]
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test, not publishable)")
    args = parser.parse_args()
    info = machine()
    quick = args.quick
    e2e_json = Path(tempfile.mkstemp(suffix=".json")[1])
    plan = {
        "receiver": ["bench/receiver.py", *(["--requests", "2000", "--rounds", "1"] if quick else [])],
        "receiver, Redis Cluster": ["bench/receiver.py", "--cluster", "12",
                                    *(["--requests", "2000", "--rounds", "1"] if quick else [])],
        "worker": ["-m", "bench.worker",
                   *(["--events", "3000", "--single", "500", "--rq-jobs", "50"] if quick else [])],
        "worker, Redis Cluster": ["-m", "bench.worker", "--cluster", "12",
                                  *(["--events", "3000", "--rounds", "1"] if quick else [])],
        "delivery": ["-m", "bench.delivery",
                     *(["--events", "1000", "--backlog", "2000", "--slow-events", "400"] if quick else [])],
        "state_memory": ["-m", "bench.state_memory", *(["--users", "200"] if quick else [])],
        "dedupe_memory": ["-m", "bench.dedupe_memory",
                          *(["--marks", "20000", "--low-limit-marks", "5000"] if quick else [])],
        "partition_memory": ["-m", "bench.partition_memory", *(["--partitions", "1,16"] if quick else [])],
        "e2e": ["-m", "bench.e2e", "--json", str(e2e_json),
                *(["--rate", "200", "--seconds", "5", "--vehicles", "10000"] if quick else [])],
    }
    outputs = {name: run(name, argv, timeout=1800) for name, argv in plan.items()}
    e2e = _read_json(e2e_json)
    variants = {}
    for name, extra in VARIANTS.items():
        outputs[name] = run(name, [*plan["e2e"], "--latency-only", *extra], timeout=1800)
        variants[name] = _read_json(e2e_json)
    e2e_json.unlink()
    write(info, outputs, e2e, variants)


def _read_json(path: Path) -> dict[str, Any]:
    text = path.read_text() if path.exists() else ""
    path.write_text("")
    return json.loads(text) if text else {}


if __name__ == "__main__":
    main()
