"""A real Sentinel deployment for tests: one primary, one replica, three sentinels, each on a free port.

    with SentinelGroup(tmp_path).start() as group:
        group.url                 redis+sentinel://127.0.0.1:p1,…/plugwatch/0
        group.kill_primary()      SIGKILL the current primary (the replica is promoted within ~1-2 s)
        group.primary_port()      what the sentinels say now
        group.replica_in_sync()   the other server replicates the current primary
        group.replicate_through_proxy()   the replica's link through a TcpProxy (blackhole it: a lagging replica)

Sentinels run as `redis-server <conf> --sentinel` (Debian's `redis-sentinel` is only that binary under another
name), with a short down-after and failover timeout so a failover takes a second or two, not a minute.
"""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import redis

from simulator.redis_binary import find_redis_server
from tests.support.servers import RedisServer, free_port, wait_until
from tests.support.tcp_proxy import TcpProxy

SERVICE = "plugwatch"
DOWN_AFTER_MS = 500
FAILOVER_TIMEOUT_MS = 2000


@dataclass
class SentinelGroup:
    workdir: Path
    primary: RedisServer = field(init=False)
    replica: RedisServer = field(init=False)
    sentinel_ports: list[int] = field(default_factory=lambda: [free_port() for _ in range(3)])
    sentinels: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.primary = RedisServer(self.workdir / "primary")
        self.replica = RedisServer(self.workdir / "replica")

    @property
    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{nodes}/{SERVICE}/0"

    def start(self) -> SentinelGroup:
        self.primary.start()
        self.replica.start()
        with self.replica.client() as client:
            client.execute_command("REPLICAOF", "127.0.0.1", str(self.primary.port))
        wait_until(self.replica_in_sync, timeout=20, message="the replica did not sync")
        binary = find_redis_server()
        assert binary is not None
        for index, port in enumerate(self.sentinel_ports):
            directory = self.workdir / f"sentinel-{index}"
            directory.mkdir(parents=True, exist_ok=True)
            conf = directory / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {directory}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {SERVICE} 1\n")
            self.sentinels.append(subprocess.Popen([binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL))
        wait_until(self._sentinels_agree, timeout=20, message="the sentinels did not find each other and the replica")
        return self

    def replica_in_sync(self) -> bool:
        """The server that is not the primary (as the sentinels say) is connected to it and in sync."""
        primary = self.primary_port() or self.primary.port
        replica = self.replica if primary == self.primary.port else self.primary
        try:
            with replica.client(socket_timeout=0.5) as client:
                info = client.info("replication")
        except redis.RedisError:
            return False
        return info.get("role") == "slave" and info.get("master_port") == primary and \
            info.get("master_link_status") == "up"

    def _sentinels_agree(self) -> bool:
        for port in self.sentinel_ports:
            try:
                with redis.Redis(port=port, socket_timeout=0.5) as client:
                    state = client.sentinel_master(SERVICE)
            except redis.RedisError:
                return False
            if int(state.get("num-other-sentinels", 0)) < 2 or int(state.get("num-slaves", 0)) < 1:
                return False
        return True

    def primary_port(self) -> int | None:
        for port in self.sentinel_ports:
            try:
                with redis.Redis(port=port, socket_timeout=0.5) as client:
                    return int(client.sentinel_get_master_addr_by_name(SERVICE)[1])
            except (redis.RedisError, TypeError):
                continue
        return None

    def current_primary(self) -> RedisServer:
        return self.primary if self.primary_port() == self.primary.port else self.replica

    def replica_server(self) -> RedisServer:
        return self.replica if self.current_primary() is self.primary else self.primary

    def replicate_through_proxy(self) -> TcpProxy:
        """Point the replica at the primary through a TCP proxy the test owns (started; close it after):
        `blackhole()` makes the replica lag (nothing written meanwhile reaches it), `reset()` drops what the
        proxy holds. SIGSTOPping the replica would not do: the kernel's socket buffers still take the stream
        and hand it over when the replica resumes, even after the primary died."""
        primary, replica = self.current_primary(), self.replica_server()
        proxy = TcpProxy(("127.0.0.1", primary.port)).__enter__()
        with replica.client() as client:
            client.execute_command("REPLICAOF", "127.0.0.1", str(proxy.port))
        wait_until(lambda: self._linked(replica, proxy.port), timeout=20, message="the replica did not resync")
        return proxy

    @staticmethod
    def _linked(replica: RedisServer, port: int) -> bool:
        with replica.client(socket_timeout=0.5) as client:
            info = client.info("replication")
        return info.get("master_port") == port and info.get("master_link_status") == "up"

    def kill_primary(self) -> RedisServer:
        """SIGKILL the primary; returns the server killed (the replica is promoted by the sentinels)."""
        victim = self.current_primary()
        victim.kill()
        return victim

    def stop(self) -> None:
        for process in self.sentinels:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.sentinels:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.sentinels.clear()
        self.replica.stop()
        self.primary.stop()

    def __enter__(self) -> SentinelGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
