"""Private Redis servers for tests and benchmarks: a Redis Cluster of 6 `redis-server` nodes (3 masters,
3 replicas) on free ports at most 55535 (each node's cluster bus listens on its port + 10000), created with
`redis-cli --cluster create` and removed with its folder afterwards, also when the caller fails; and one
plain master with a replica (`ReplicatedRedis`), the one-node deployment to compare it with.

Also what the failover and resharding tests do to a cluster: SIGKILL a master and wait for its replica to take
over, restart a killed node (as a deployment's process manager would: it rejoins as a replica), and move
one slot to another master key by key (the MIGRATING/IMPORTING protocol `redis-cli --cluster reshard` uses,
slowed down so clients meet ASK and TRYAGAIN while it runs).
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

MAX_PORT = 55535  # the cluster bus is port + 10000, and must stay a valid port


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_ports(n: int, low: int = 20000, high: int = MAX_PORT) -> list[int]:
    """n free ports in [low, high] whose bus ports (+10000) are free too; random, so parallel runs rarely meet."""
    ports: list[int] = []
    tries = 0
    while len(ports) < n:
        tries += 1
        if tries > 10_000:
            raise RuntimeError("no free ports for a private Redis Cluster")
        port = random.randint(low, high)
        if port in ports or port + 10000 in ports:
            continue
        if _bindable(port) and _bindable(port + 10000):
            ports.append(port)
    return ports


def spawn_redis(node: Node, *options: str) -> None:
    """Starts redis-server for `node` (no RDB snapshots, `options` added) and waits until it answers."""
    node.folder.mkdir(parents=True, exist_ok=True)
    cmd = [
        shutil.which("redis-server") or "redis-server", "--port", str(node.port), "--bind", "127.0.0.1",
        "--protected-mode", "no", "--dir", str(node.folder), "--logfile", str(node.folder / "redis.log"),
        "--save", "", *options,
    ]  # fmt: skip
    node.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with node.client() as c:
                if c.ping():
                    return
        except redis.ConnectionError:
            pass
        if node.proc.poll() is not None:
            log = node.folder / "redis.log"
            raise AssertionError(f"redis-server {node.port} exited: {log.read_text()[-2000:] if log.exists() else ''}")
        time.sleep(0.05)
    raise AssertionError(f"redis-server {node.port} did not start")


@dataclass
class Node:
    port: int
    folder: Path
    proc: subprocess.Popen | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, **kw: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, socket_timeout=5,
                           socket_connect_timeout=1, **kw)  # type: ignore[arg-type]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class PrivateCluster:
    """Six nodes; `start()` creates the cluster and waits until every node says cluster_state:ok."""

    def __init__(self, folder: Path, *, nodes: int = 6, node_timeout_ms: int = 2000, appendonly: bool = False) -> None:
        self.folder = folder
        self.node_timeout_ms = node_timeout_ms
        self.appendonly = appendonly
        self.nodes = [Node(port, folder / str(port)) for port in free_cluster_ports(nodes)]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(n.addr for n in self.nodes[:3])

    # -- processes ----------------------------------------------------------------------------------------
    def _spawn(self, node: Node) -> None:
        spawn_redis(node, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(self.node_timeout_ms),
                    "--appendonly", "yes" if self.appendonly else "no")

    def log(self, node: Node, chars: int = 2000) -> str:
        path = node.folder / "redis.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def start(self) -> PrivateCluster:
        try:
            for node in self.nodes:
                self._spawn(node)
            subprocess.run(
                [shutil.which("redis-cli") or "redis-cli", "--cluster", "create", *(n.addr for n in self.nodes),
                 "--cluster-replicas", "1", "--cluster-yes"],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
            self.wait_ok()
            self.wait_replicas_synced()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive():
                node.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
                node.proc.wait(10)  # type: ignore[union-attr]
        shutil.rmtree(self.folder, ignore_errors=True)

    def kill(self, node: Node) -> None:
        assert node.proc is not None
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(10)

    def restart(self, node: Node) -> None:
        """Start a killed node again with its nodes.conf: it rejoins the cluster (as a replica if its slots
        were taken over meanwhile)."""
        self._spawn(node)

    # -- topology -----------------------------------------------------------------------------------------
    def _view(self) -> list[dict]:
        for node in self.nodes:
            if not node.alive():
                continue
            try:
                with node.client() as c:
                    return _parse_nodes(c.execute_command("CLUSTER", "NODES"))
            except redis.RedisError:
                continue
        raise AssertionError("no node of the private cluster answers")

    def masters(self) -> list[Node]:
        ports = {int(n["addr"].split(":")[1].split("@")[0]) for n in self._view()
                 if "master" in n["flags"] and "fail" not in n["flags"]}
        return [n for n in self.nodes if n.port in ports and n.alive()]

    def node_id(self, node: Node) -> str:
        with node.client() as c:
            return c.execute_command("CLUSTER", "MYID")

    def master_of_slot(self, slot: int) -> Node:
        for entry in self._view():
            if "master" in entry["flags"] and "fail" not in entry["flags"] and slot in entry["slots"]:
                port = int(entry["addr"].split(":")[1].split("@")[0])
                return next(n for n in self.nodes if n.port == port)
        raise AssertionError(f"no master serves slot {slot}")

    def replicas_of(self, master: Node) -> list[Node]:
        mid = self.node_id(master)
        ports = {int(n["addr"].split(":")[1].split("@")[0]) for n in self._view() if n["master"] == mid}
        return [n for n in self.nodes if n.port in ports]

    def wait_ok(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                states = []
                for node in self.nodes:
                    if node.alive():
                        with node.client() as c:
                            states.append(c.execute_command("CLUSTER", "INFO"))
                if states and all("cluster_state:ok" in s for s in states):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise AssertionError("private cluster not ok in time: " + "; ".join(self.log(n, 300) for n in self.nodes))

    def wait_replicas_synced(self, timeout: float = 60) -> None:
        """Every live master has at least one replica with the link up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if all(_connected_replicas(m) >= 1 for m in self.masters()):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise AssertionError("replicas did not sync in time")

    def fail_over(self, master: Node, *, lag: float = 0.0, timeout: float = 60) -> Node:
        """SIGKILL `master` and wait until one of its replicas is promoted and the cluster is ok again;
        returns the new master. With `lag`, its replicas lose their link to it that many seconds before the
        kill (a network blip: the link is cut and their reconnection refused), so they lag behind what it
        answered meanwhile, which is what asynchronous replication loses in a failover."""
        replicas = self.replicas_of(master)
        assert replicas, f"{master.addr} has no replica to take over"
        if lag:
            for replica in replicas:
                with replica.client() as c:
                    c.config_set("masterauth", "a-password-the-master-refuses")  # its reconnections fail
                    c.execute_command("CLIENT", "KILL", "TYPE", "master")
            time.sleep(lag)
        self.kill(master)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                for replica in replicas:
                    try:
                        with replica.client() as c:
                            if c.info("replication").get("role") == "master":
                                self.wait_ok(timeout=max(1.0, deadline - time.monotonic()))
                                return replica
                    except redis.RedisError:
                        pass
                time.sleep(0.1)
            raise AssertionError(f"no replica took over from {master.addr}: {self.log(replicas[0])}")
        finally:
            for replica in replicas:
                if lag and replica.alive():
                    with replica.client() as c:
                        c.config_set("masterauth", "")

    # -- resharding ---------------------------------------------------------------------------------------
    def migrate_slot(self, slot: int, target: Node, *, per_key_pause: float = 0.0, batch: int = 1) -> int:
        """Move `slot` to `target` key by key (as `redis-cli --cluster reshard` does, `batch` keys per
        MIGRATE, a pause between); returns how many keys moved."""
        source = self.master_of_slot(slot)
        if source.port == target.port:
            return 0
        src_id, dst_id = self.node_id(source), self.node_id(target)
        moved = 0
        with source.client() as src, target.client() as dst:
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
            while True:
                keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch)
                if not keys:
                    break
                src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
                moved += len(keys)
                if per_key_pause:
                    time.sleep(per_key_pause)
            for node in (dst, src):
                node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        for node in self.nodes:
            if node.alive() and node.port not in (source.port, target.port):
                try:
                    with node.client() as c:
                        c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
                except redis.RedisError:
                    pass  # a replica: it learns the new owner through the bus
        return moved


def _connected_replicas(master: Node) -> int:
    with master.client() as c:
        info = c.info("replication")
    return sum(1 for name, value in info.items()
               if name.startswith("slave") and isinstance(value, dict) and value.get("state") == "online")


def _parse_nodes(text: str) -> list[dict]:
    out = []
    for line in text.strip().splitlines():
        parts = line.split()
        slots: set[int] = set()
        for item in parts[8:]:
            if item.startswith("["):
                continue  # a slot being migrated or imported
            lo, _, hi = item.partition("-")
            slots.update(range(int(lo), int(hi or lo) + 1))
        out.append({"id": parts[0], "addr": parts[1], "flags": parts[2].split(","), "master": parts[3],
                    "slots": slots})
    return out


class ReplicatedRedis:
    """One plain redis-server (no cluster) and a replica of it, on free ports: one node as deployed today,
    with a replica for MEMORYOS_PUBLISH_MIN_REPLICAS."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.master, self.replica = (Node(p, folder / str(p)) for p in free_cluster_ports(2))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.master.port}/0"

    def start(self) -> ReplicatedRedis:
        try:
            spawn_redis(self.master, "--appendonly", "no")
            spawn_redis(self.replica, "--appendonly", "no", "--replicaof", "127.0.0.1", str(self.master.port))
            deadline = time.monotonic() + 30
            while _connected_replicas(self.master) < 1:
                if time.monotonic() > deadline:
                    raise AssertionError("the replica did not sync")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in (self.replica, self.master):
            if node.alive():
                node.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
                node.proc.wait(10)  # type: ignore[union-attr]
        shutil.rmtree(self.folder, ignore_errors=True)
