"""Processes the tests start of their own: a Celery worker process, a private redis-server (with
persistence, a password or TLS). The machine's shared Redis is never restarted, reconfigured or flushed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import redis

from producers.wire.contract import ALL_QUEUES

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChildProcess:
    """What every process a test starts shares: its log's tail for failure messages, SIGKILL, and a
    SIGTERM that waits `grace` seconds (the child's own graceful shutdown) before SIGKILL."""

    proc: subprocess.Popen | None = None
    log: Path | None = None
    grace: float = 40

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log and self.log.exists() else ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(self.grace)
        except subprocess.TimeoutExpired:
            self.kill()


class WorkerProcess(ChildProcess):
    """`celery -A memoryos_workers worker -P threads -c N` in its own process (it owns the store), or with
    another pool."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path, concurrency: int = 8, pool: str = "threads",
                 ready_marker: str = "memoryos worker ready") -> None:
        self.name = name
        self.env = env
        self.log_dir = log_dir
        self.concurrency = concurrency
        self.pool = pool
        self.ready_marker = ready_marker  # the log line that says it consumes
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.log: Path | None = None

    def start(self, timeout: float = 90) -> WorkerProcess:
        self.starts += 1
        self.log = self.log_dir / f"worker-{self.name}-{self.starts}.log"
        cmd = [
            sys.executable, "-m", "celery", "-A", "memoryos_workers", "worker", "-P", self.pool,
            "-c", str(self.concurrency), "-Q", ",".join(ALL_QUEUES), "-l", "INFO",
            "--without-heartbeat", "--without-mingle", "--without-gossip",
            "-n", f"{self.name}-{os.getpid()}@%h",
        ]  # fmt: skip
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready_marker in self.log.read_text(errors="replace"):
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.tail()}")
            time.sleep(0.2)
        self.kill()
        raise AssertionError(f"worker did not become ready:\n{self.tail()}")



def make_certificate(folder: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 (cert.pem, key.pem), which is also its own CA."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            shutil.which("openssl") or "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"),
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    return folder / "cert.pem"


class PrivateRedis:
    """A redis-server of the test's own. Persistence on by default (every write fsynced before its
    reply); optionally a password, and TLS only (no plain port) with a self-signed certificate."""

    def __init__(
        self, port: int, folder: Path, *, persistent: bool = True, password: str | None = None, tls: bool = False
    ) -> None:
        self.port = port
        self.folder = folder
        self.persistent = persistent
        self.password = password
        self.cert = make_certificate(folder / "tls") if tls else None
        self.proc: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        if self.cert is None:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_cert_reqs=required&ssl_ca_certs={self.cert}"

    def _command(self) -> list[str]:
        cmd = [
            shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1", "--dir", str(self.folder),
            "--protected-mode", "no", "--logfile", str(self.folder / "redis.log"), "--save", "",
        ]  # fmt: skip
        if self.persistent:
            cmd += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            cmd += ["--appendonly", "no"]
        if self.password:
            cmd += ["--requirepass", self.password]
        if self.cert is None:
            return [*cmd, "--port", str(self.port)]
        key = self.cert.with_name("key.pem")
        return [
            *cmd, "--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.cert),
            "--tls-key-file", str(key), "--tls-ca-cert-file", str(self.cert), "--tls-auth-clients", "no",
        ]  # fmt: skip

    def start(self, timeout: float = 20) -> PrivateRedis:
        self.proc = subprocess.Popen(self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                try:
                    if client.ping() and client.info("persistence").get("loading") == 0:
                        return self
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                if self.proc.poll() is not None:
                    raise AssertionError(f"redis-server exited: {(self.folder / 'redis.log').read_text()[-2000:]}")
                time.sleep(0.05)
        finally:
            client.close()
        raise AssertionError("private redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class BeatProcess(ChildProcess):
    """`celery -A memoryos_workers beat`: the deployment's one beat, which sends the sweep that re-kicks
    due batches whose task was lost."""

    grace = 20

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None
        self.log = log_dir / "beat.log"

    def start(self, timeout: float = 60) -> BeatProcess:
        cmd = [
            sys.executable, "-m", "celery", "-A", "memoryos_workers", "beat", "-l", "INFO",
            "-s", str(self.log_dir / "beat-schedule"), "--pidfile", str(self.log_dir / "beat.pid"),
        ]  # fmt: skip
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "beat: Starting" in self.log.read_text(errors="replace"):
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"beat exited early:\n{self.tail()}")
            time.sleep(0.2)
        self.stop()
        raise AssertionError("beat did not start")


class ApiServer(ChildProcess):
    """`memoryos serve` in its own process (uvicorn, the real app), ready once /healthz answers. SIGTERM
    is uvicorn's graceful shutdown: it stops the in-process worker and closes the store."""

    grace = 45

    def __init__(self, name: str, env: dict[str, str], log_dir: Path, args: tuple[str, ...] = ()) -> None:
        self.name = name
        self.env = env
        self.log_dir = log_dir
        self.args = args
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = log_dir / f"api-{name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> ApiServer:
        import httpx

        cmd = [sys.executable, "-m", "memoryos_workers.apps.cli", "serve", "--port", str(self.port), *self.args]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"memoryos serve exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise AssertionError(f"memoryos serve did not answer within {timeout:.0f} s:\n{self.tail()}")

