"""A failover that loses no acknowledged turn (issue 23), and a slot moved while its user publishes.

The deployment: memory on a private 6-node Redis Cluster (3 masters, 3 replicas, node timeout 2 s), Celery
on RabbitMQ (a vhost of the test's own), a real worker process and the deployment's beat, the real store
and embeddings, the fake LLM over HTTP. A "process manager" restarts whatever exits or is killed, as
systemd, compose's `restart: unless-stopped` or Kubernetes would; no person restarts anything.

Failover: while 4 threads publish (each publish that raises is sent again with the same turn_id, as a
client does), a master is SIGKILLed and its replica promoted by the cluster; then the worker is SIGKILLed
mid-promotion (RabbitMQ hands its unacknowledged task to the restarted worker at once). The killed node
comes back as its process manager restarts it, and rejoins as a replica. With MEMORYOS_PUBLISH_MIN_REPLICAS=1
every acknowledged turn is exported exactly once and all are promoted; with 0 the test reports how many
acknowledged turns the failover took with it.

Resharding: the slot of a user who keeps publishing moves to another master key by key (MIGRATING and
IMPORTING, as `redis-cli --cluster reshard` does it, slowed down), while the worker ingests: nothing is lost
or doubled.

Printed with -s: the figures (bench/results/faults.json with MEMORYOS_FAULT_RESULTS, BENCHMARKS.md).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench.faults import record
from memoryos_workers.testing.fake_llm import FakeLLM
from memoryos_workers.testing.rabbitmq import Vhost
from memoryos_workers.testing.redis_cluster import Node, PrivateCluster
from memoryos_workers.testing.responders import default_responder
from producers.errors import RedisUnavailableError
from producers.pending import PendingWork
from producers.publish import Publisher
from producers.replication import ReplicationError
from schemas.settings import Settings
from tests.conftest import PREFIX
from tests.processes import BeatProcess, WorkerProcess
from tests.system.test_cluster import cluster_env
from tests.system.test_faults import all_turns, wait_all_idle

pytestmark = pytest.mark.integration

THREADS, USERS_PER_THREAD = 4, 2
PACE_S = 0.02  # between two publishes of a thread: they go on through both kills, until told to stop
LAG_S = 1.0  # before the kill, the victim's replica keeps losing its link: it lags behind the master
PUBLISH_GIVE_UP_S = 90  # a client retries one turn this long before it gives up on it


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[PrivateCluster]:
    cl = PrivateCluster(tmp_path / "cluster").start()
    try:
        yield cl
    finally:
        cl.stop()


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    server = FakeLLM(seed=0).start()
    server.responder = default_responder
    server.latency = 0.3  # each call takes a while, so the kills land mid-promotion
    yield server
    server.stop()


class ProcessManager:
    """Restarts the worker whenever its process exits (a restart policy), from a thread of its own."""

    def __init__(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self.errors: list[BaseException] = []

    def start(self) -> ProcessManager:
        self.worker.start()
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            proc = self.worker.proc
            if proc is not None and proc.poll() is not None:
                try:
                    self.restarts += 1
                    self.worker.start()
                except BaseException as exc:  # noqa: BLE001 - reported by the test
                    self.errors.append(exc)
                    return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.worker.stop()


@dataclass
class Run:
    """Per user, the turn ids whose publish returned (in order) and those given up on."""

    acked: dict[str, list[str]] = field(default_factory=dict)
    gave_up: dict[str, list[str]] = field(default_factory=dict)
    raised: Counter[str] = field(default_factory=Counter)  # exception name -> publishes that raised it
    progress: int = 0
    errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _publish(publisher: Publisher, t: int, users: list[str], run: Run, stop: threading.Event) -> None:
    try:
        i = 0
        while not stop.is_set():
            user = users[i % len(users)]
            turn = {"user_id": user, "turn_id": f"fo-{t}-{i:05d}", "user_input": f"[{user}] note {i}: the bees swarmed",
                    "agent_response": f"noted {i}"}
            deadline, done = time.monotonic() + PUBLISH_GIVE_UP_S, False
            while not done and time.monotonic() < deadline:
                try:
                    publisher.publish(turn)
                    done = True
                except (RedisUnavailableError, ReplicationError) as exc:
                    with run.lock:
                        run.raised[type(exc).__name__] += 1
                    time.sleep(0.1)
            with run.lock:
                (run.acked if done else run.gave_up).setdefault(user, []).append(turn["turn_id"])
                run.progress += 1
            i += 1
            time.sleep(PACE_S)
    except BaseException as exc:  # noqa: BLE001 - surfaced in the main thread
        run.errors.append(exc)


def _start_publishers(publisher: Publisher, users: list[str], run: Run, stop: threading.Event,
                      ) -> list[threading.Thread]:
    per = USERS_PER_THREAD
    threads = [threading.Thread(target=_publish, daemon=True,
                                args=(publisher, t, users[t * per:(t + 1) * per], run, stop)) for t in range(THREADS)]
    for th in threads:
        th.start()
    return threads


def _wait_for(condition: Any, timeout: float, what: str, detail: Any = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {detail()}")
        time.sleep(0.05)


def _seen_within(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _promoting(publisher: Publisher, users: list[str]) -> bool:
    try:
        return any(publisher.redis.exists(publisher.keys.user(u).lock) for u in users)
    except Exception:  # noqa: BLE001 - the cluster may be failing over
        return False


def _audit(settings: Settings, run: Run) -> dict[str, Any]:
    """Opens the store (the worker is stopped) and counts, per acknowledged turn, its copies in the store and
    Redis, and what `memoryos export` lists."""
    from memoryos_workers.ops.user_data import collect_user_records
    from memoryos_workers.runtime import Runtime

    rt = Runtime(settings)
    try:
        lost, doubled, out_of_order, tiers, exported_twice = [], [], [], Counter(), 0
        for user, acked in run.acked.items():
            copies = all_turns(rt, user)
            ids = Counter(t for _, _, t in copies)
            tiers.update(tier for tier, _, _ in copies)
            lost += [t for t in acked if t not in ids]
            doubled += [t for t, n in ids.items() if n > 1]
            exported = [r["turn_id"] for r in collect_user_records(rt, user) if r["type"] == "turn"]
            exported_twice += len(exported) - len(set(exported))
            kept = [t for t in exported if t in set(acked)]
            if kept != [t for t in acked if t in set(kept)]:
                out_of_order.append(user)
            allowed = set(acked) | set(run.gave_up.get(user, []))
            assert set(exported) <= allowed, f"{user}: exported turns nobody published: {set(exported) - allowed}"
        return {"acked": sum(len(v) for v in run.acked.values()), "lost": lost, "doubled": doubled,
                "exported_twice": exported_twice, "out_of_order": out_of_order, "tiers": dict(tiers)}
    finally:
        rt.close()


def _failover_run(min_replicas: int, cluster: PrivateCluster, vhost: Vhost, llm: FakeLLM, tmp_path: Path,
                  ) -> tuple[dict[str, Any], Settings]:
    started = time.monotonic()
    prefix = f"{PREFIX}-fo{min_replicas}"
    settings, env = cluster_env(cluster, prefix, tmp_path / "data", vhost.url, publish_min_replicas=min_replicas,
                                openai_base_url=llm.base_url)
    publisher = Publisher(settings)
    users = [f"fo-user-{i}" for i in range(THREADS * USERS_PER_THREAD)]
    manager = ProcessManager(WorkerProcess(f"failover{min_replicas}", env, tmp_path, concurrency=8))
    beat = BeatProcess(env, tmp_path)
    run, stop = Run(), threading.Event()
    manager.start()
    beat.start()
    try:
        threads = _start_publishers(publisher, users, run, stop)
        def state() -> str:
            return f"published {run.progress}, raised {dict(run.raised)}, errors {run.errors}; worker log:\n" \
                   + manager.worker.tail()

        _wait_for(lambda: run.progress >= 25 * len(users) and _promoting(publisher, users), 120,
                  "publishing and a promotion before the kill", state)
        # The master of the most users' slots: its replica must take over.
        by_master = Counter(cluster.master_of_slot(publisher.redis.keyslot(publisher.keys.user(u).stm)).port
                            for u in users)
        victim: Node = next(n for n in cluster.nodes if n.port == by_master.most_common(1)[0][0])
        t0 = time.monotonic()
        promoted = cluster.fail_over(victim, lag=LAG_S)
        failover_s = round(time.monotonic() - t0, 2)
        # SIGKILL mid-promotion when one runs soon; the process manager starts it again. None may start for a
        # while: a publishing thread retries a turn of a user on the promoted master for up to
        # PUBLISH_GIVE_UP_S, and with min replicas 1 that master has no replica until the victim returns, so
        # with every thread on such a user no batch forms. The kill comes either way.
        mid_promotion = _seen_within(lambda: _promoting(publisher, users), 60)
        pid = manager.worker.proc.pid
        manager.worker.kill()
        _wait_for(lambda: manager.worker.proc is not None and manager.worker.proc.pid != pid
                  and manager.worker.proc.poll() is None, 180, "the worker's restart")
        cluster.restart(victim)  # its process manager, too: it rejoins as the promoted node's replica
        cluster.wait_replicas_synced()
        after = run.progress
        _wait_for(lambda: run.progress >= after + 10 * len(users), 120, "publishes after the node's return", state)
        stop.set()
        for th in threads:
            th.join(2 * PUBLISH_GIVE_UP_S)
        assert not run.errors, run.errors
        assert not any(th.is_alive() for th in threads)
        drained = wait_all_idle(PendingWork(publisher), users, timeout=300, flush=True)
        assert not manager.errors, manager.errors
        restarts = manager.restarts
    finally:
        stop.set()
        beat.stop()
        manager.stop()
    audit = _audit(settings, run)
    figures = {
        "scenario": f"cluster-failover-min-replicas-{min_replicas}",
        "published": audit["acked"], "found": audit["acked"] - len(audit["lost"]), "duplicates": len(audit["doubled"]),
        "lost": len(audit["lost"]),
        "gave_up": sum(len(v) for v in run.gave_up.values()), "raised": dict(run.raised),
        "failover_s": failover_s, "promoted": promoted.addr, "worker_restarts": restarts,
        "worker_killed_mid_promotion": mid_promotion,
        "drain_after_publishing_s": round(drained, 1), "tiers": audit["tiers"],
        "seconds": round(time.monotonic() - started, 1),
    }
    print(f"\n[failover] {json.dumps(figures)}", flush=True)
    record(figures)
    return {**figures, "audit": audit}, settings


def test_failover_with_min_replicas_1_loses_no_acknowledged_turn(cluster: PrivateCluster, vhost: Vhost, llm: FakeLLM,
                                                                 tmp_path: Path) -> None:
    result, settings = _failover_run(1, cluster, vhost, llm, tmp_path)
    audit = result["audit"]
    assert not audit["lost"], f"acknowledged turns lost: {audit['lost']}"
    assert not audit["doubled"] and not audit["exported_twice"], audit["doubled"]
    assert not audit["out_of_order"], audit["out_of_order"]
    assert set(audit["tiers"]) <= {"mid_term", "short_term"}, f"turns left pending: {audit['tiers']}"
    assert result["worker_restarts"] >= 1
    assert result["gave_up"] == 0, "a publish never got its replica, although the killed node came back"


def test_failover_with_min_replicas_0_reports_what_it_lost(cluster: PrivateCluster, vhost: Vhost, llm: FakeLLM,
                                                           tmp_path: Path) -> None:
    result, _ = _failover_run(0, cluster, vhost, llm, tmp_path)
    audit = result["audit"]
    print(f"\n[failover] min replicas 0: {len(audit['lost'])} of {audit['acked']} acknowledged turns lost "
          f"({audit['lost'][:10]})", flush=True)
    assert not audit["doubled"] and not audit["exported_twice"], audit["doubled"]
    assert set(audit["tiers"]) <= {"mid_term", "short_term"}, f"turns left pending: {audit['tiers']}"


# --------------------------------------------------------------------------------------------------
# Resharding: a publishing user's slot moves to another master
# --------------------------------------------------------------------------------------------------


def test_resharding_a_publishing_users_slot_loses_and_doubles_nothing(
    cluster: PrivateCluster, llm: FakeLLM, tmp_path: Path, settings: Settings, redis_client: Any
) -> None:
    """The user's slot moves key by key (a pause after each, so publishes, promotions and reads meet ASK
    and TRYAGAIN for a while), then back at full speed; the broker is the shared test Redis."""
    from tests.system.test_faults import check_exactly_once

    started = time.monotonic()
    prefix = f"{PREFIX}-reshard"
    deploy, env = cluster_env(cluster, prefix, tmp_path / "data", settings.redis_url, openai_base_url=llm.base_url)
    publisher = Publisher(deploy)
    users = [f"rs-user-{i}" for i in range(THREADS * USERS_PER_THREAD)]
    hot = users[0]
    slot = publisher.redis.keyslot(publisher.keys.user(hot).stm)
    worker = WorkerProcess("reshard", env, tmp_path, concurrency=8)
    run, stop = Run(), threading.Event()
    moves: list[dict[str, Any]] = []
    try:
        worker.start()
        threads = _start_publishers(publisher, users, run, stop)
        _wait_for(lambda: len(run.acked.get(hot, [])) >= 25 and _promoting(publisher, [hot]), 120,
                  "the user's turns and a promotion before the move", lambda: worker.tail())
        for pause in (0.2, 0.0):
            source = cluster.master_of_slot(slot)
            target = next(m for m in cluster.masters() if m.port != source.port)
            t0 = time.monotonic()
            keys = cluster.migrate_slot(slot, target, per_key_pause=pause)
            moves.append({"keys": keys, "seconds": round(time.monotonic() - t0, 2), "pause_s": pause})
            assert cluster.master_of_slot(slot).port == target.port
            before = len(run.acked.get(hot, []))
            _wait_for(lambda n=before: len(run.acked.get(hot, [])) >= n + 12, 120, "publishes after the move",
                      lambda: f"{dict(run.raised)} {run.errors}")
        stop.set()
        for th in threads:
            th.join(2 * PUBLISH_GIVE_UP_S)
        assert not run.errors, run.errors
        assert not run.gave_up, f"publishes given up: {run.gave_up}"
        wait_all_idle(PendingWork(publisher), users, timeout=300, flush=True)
        assert "Unrecoverable error" not in worker.log.read_text(errors="replace")
    finally:
        stop.set()
        worker.stop()
        for key in redis_client.scan_iter(match=f"{prefix}*", count=1000):
            redis_client.delete(key)
    from memoryos_workers.runtime import Runtime

    rt = Runtime(deploy)
    try:
        counts = check_exactly_once(rt, run.acked)  # each once, in publish order, seq without gaps; export agrees
    finally:
        rt.close()
    assert set(k for k in counts if k.startswith("tier_")) <= {"tier_mid_term", "tier_short_term"}, counts
    assert moves[0]["keys"] >= 5, f"the slot held few of the user's keys: {moves}"
    figures = {"scenario": "cluster-reshard-publishing-user", "published": sum(len(v) for v in run.acked.values()),
               "hot_user_turns": len(run.acked[hot]), "found": counts["found"], "duplicates": counts["duplicates"],
               "raised": dict(run.raised), "moves": moves, "seconds": round(time.monotonic() - started, 1)}
    print(f"\n[reshard] {json.dumps(figures)}", flush=True)
    record(figures)
