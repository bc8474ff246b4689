"""RabbitMQ for tests and benchmarks: the machine's broker at 127.0.0.1:5672 (guest/guest), with a virtual
host of the caller's own, created and deleted by it (`rabbitmqctl`, which works as root, or else the management
API on port 15672). Nothing outside that vhost is touched; tests skip, saying why, when no RabbitMQ answers.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from urllib.parse import quote

HOST = os.environ.get("MEMORYOS_TEST_RABBITMQ_HOST", "127.0.0.1")
PORT = int(os.environ.get("MEMORYOS_TEST_RABBITMQ_PORT", "5672"))
USER = os.environ.get("MEMORYOS_TEST_RABBITMQ_USER", "guest")
PASSWORD = os.environ.get("MEMORYOS_TEST_RABBITMQ_PASSWORD", "guest")
MANAGEMENT = f"http://{HOST}:15672/api"


def unavailable() -> str | None:
    """Why RabbitMQ cannot be used here, or None when it answers AMQP with our credentials."""
    try:
        with socket.create_connection((HOST, PORT), timeout=2):
            pass
    except OSError as exc:
        return f"no RabbitMQ answers at {HOST}:{PORT} ({exc})"
    from kombu import Connection

    try:
        with Connection(f"amqp://{USER}:{PASSWORD}@{HOST}:{PORT}//", connect_timeout=5) as conn:
            conn.connect()
    except Exception as exc:  # noqa: BLE001 - any failure means: skip, saying why
        return f"RabbitMQ at {HOST}:{PORT} refused {USER}: {type(exc).__name__}: {exc}"
    if _ctl() is None and not _management_ok():
        return "cannot create a private vhost: no rabbitmqctl usable here and no management API on port 15672"
    return None


def _ctl() -> str | None:
    path = shutil.which("rabbitmqctl")
    if path is None or os.geteuid() != 0:
        return None
    return path


def _management_ok() -> bool:
    import httpx

    try:
        return httpx.get(f"{MANAGEMENT}/overview", auth=(USER, PASSWORD), timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _run(*args: str) -> str:
    return subprocess.run([_ctl() or "rabbitmqctl", *args], check=True, capture_output=True, text=True,
                          timeout=120).stdout


class Vhost:
    """A virtual host of the test's own on the machine's RabbitMQ; `url` is the broker URL into it."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"mostest-{uuid.uuid4().hex[:10]}"

    @property
    def url(self) -> str:
        return f"amqp://{USER}:{PASSWORD}@{HOST}:{PORT}/{quote(self.name, safe='')}"

    def create(self) -> Vhost:
        if _ctl():
            _run("add_vhost", self.name)
            _run("set_permissions", "-p", self.name, USER, ".*", ".*", ".*")
        else:
            import httpx

            vhost = quote(self.name, safe="")
            httpx.put(f"{MANAGEMENT}/vhosts/{vhost}", auth=(USER, PASSWORD), timeout=10).raise_for_status()
            httpx.put(f"{MANAGEMENT}/permissions/{vhost}/{USER}", auth=(USER, PASSWORD), timeout=10,
                      json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
        return self

    def delete(self) -> None:
        try:
            if _ctl():
                _run("delete_vhost", self.name)
            else:
                import httpx

                httpx.delete(f"{MANAGEMENT}/vhosts/{quote(self.name, safe='')}", auth=(USER, PASSWORD), timeout=30)
        except Exception as exc:  # noqa: BLE001 - cleanup: say so, do not mask the test's own outcome
            print(f"could not delete RabbitMQ vhost {self.name}: {exc}")

    def queues(self) -> dict[str, dict[str, str]]:
        """name -> {type, messages, consumers} of the vhost's queues."""
        if _ctl():
            out = _run("list_queues", "-q", "--no-table-headers", "-p", self.name, "name", "type", "messages",
                       "consumers")
            rows = [line.split("\t") for line in out.strip().splitlines() if line.strip()]
            return {r[0]: {"type": r[1], "messages": r[2], "consumers": r[3]} for r in rows}
        import httpx

        data = httpx.get(f"{MANAGEMENT}/queues/{quote(self.name, safe='')}", auth=(USER, PASSWORD), timeout=10).json()
        return {q["name"]: {"type": q.get("type", ""), "messages": str(q.get("messages", 0)),
                            "consumers": str(q.get("consumers", 0))} for q in data}

    def close_connections(self, reason: str = "test: broker connection lost") -> int:
        """Closes every client connection of this vhost (only this vhost's): as the worker sees a broker
        restart. Returns how many were closed."""
        if _ctl():
            out = _run("list_connections", "-q", "--no-table-headers", "pid", "vhost")
            pids = [line.split("\t")[0] for line in out.strip().splitlines()
                    if line.strip() and line.split("\t")[-1] == self.name]
            for pid in pids:
                _run("close_connection", pid, reason)
            return len(pids)
        import httpx

        conns = httpx.get(f"{MANAGEMENT}/vhosts/{quote(self.name, safe='')}/connections", auth=(USER, PASSWORD),
                          timeout=10).json()
        for conn in conns:
            httpx.delete(f"{MANAGEMENT}/connections/{quote(conn['name'], safe='')}", auth=(USER, PASSWORD),
                         headers={"X-Reason": reason}, timeout=10)
        return len(conns)
