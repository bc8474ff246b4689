"""deploy/scale-out/ (Redis Cluster + RabbitMQ + Qdrant server, KEDA on RabbitMQ's queues) against the code.

No Docker engine or Kubernetes here either: as tests/system/test_deploy.py does for deploy/, the files are
parsed and every command, queue, setting, URL and key they name is checked against the code.
"""

from __future__ import annotations

import typing
from pathlib import Path

import yaml

from producers.cluster import is_cluster_url, parse_cluster_url
from producers.wire.contract import ALL_QUEUES
from producers.wire.keys import Keys
from schemas.settings import Settings
from tests.system.test_deploy import (
    SETTING_ENV,
    _argv,
    _compose_env,
    _is_our_image,
    _redis_flags,
    check_env,
    parse_command,
)

SCALE_OUT = Path(__file__).resolve().parents[2] / "deploy" / "scale-out"
K8S = SCALE_OUT / "k8s"
BASE = SCALE_OUT.parent / "k8s"


def compose() -> dict[str, typing.Any]:
    return yaml.safe_load((SCALE_OUT / "docker-compose.yml").read_text())


def test_compose_runs_memory_on_a_cluster_and_celery_on_rabbitmq() -> None:
    services = compose()["services"]
    runs = {}
    for name, service in services.items():
        env = _compose_env(service)
        check_env(f"scale-out compose {name}", env)
        if _is_our_image(service.get("image")):
            runs[name] = parse_command(f"scale-out compose {name}", _argv(service["command"]))
            seeds, _ = parse_cluster_url(env["MEMORYOS_REDIS_URL"])
            assert {host for host, _ in seeds} <= set(services), f"{name}: a seed node is no service"
            broker = str(env["MEMORYOS_BROKER_URL"])
            assert broker.startswith("${MEMORYOS_BROKER_URL"), f"{name}: the broker URL (a password) from the shell"
            assert env["MEMORYOS_PUBLISH_MIN_REPLICAS"] == "1"
            assert env["MEMORYOS_QDRANT_URL"].startswith("http://qdrant:")
            Settings(redis_url=env["MEMORYOS_REDIS_URL"], broker_url="amqp://u:p@rabbitmq:5672/memoryos",
                     publish_min_replicas=int(env["MEMORYOS_PUBLISH_MIN_REPLICAS"]))
    kinds = [run.kind for run in runs.values()]
    assert kinds.count("beat") == 1
    assert {q for run in runs.values() if run.kind == "worker" for q in run.queues} == set(ALL_QUEUES)
    nodes = [s for n, s in services.items() if n.startswith("redis-") and n[6:].isdigit()]
    assert len(nodes) == 6
    for node in nodes:
        flags = _redis_flags(_argv(node["command"]))
        assert (flags["cluster-enabled"], flags["appendonly"], flags["maxmemory-policy"]) == ("yes", "yes",
                                                                                             "noeviction")
    init = " ".join(_argv(services["redis-cluster-init"]["command"]))
    assert "--cluster create" in init and "--cluster-replicas 1" in init
    assert services["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS"].startswith("${RABBITMQ_PASSWORD")


def _docs(name: str) -> list[dict[str, typing.Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _base_docs() -> list[dict[str, typing.Any]]:
    kust = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return [d for f in kust["resources"] for d in yaml.safe_load_all((BASE / f).read_text()) if d]


def test_kubernetes_overlay_replaces_redis_and_the_scalers_of_the_base() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert "../../k8s" in kust["resources"]
    for resource in kust["resources"]:
        assert (K8S / resource).exists(), resource
    base = {(d["kind"], d["metadata"]["name"]) for d in _base_docs()}
    deleted = []
    for patch in kust["patches"]:
        if "path" in patch:
            assert (K8S / patch["path"]).exists()
            continue
        body = patch["patch"]
        if "$patch: delete" in body:
            doc = yaml.safe_load(body)
            deleted.append((doc["kind"], doc["metadata"]["name"]))
        else:
            assert patch["target"]["kind"] == "Deployment" and "memoryos-broker" in body
    assert set(deleted) <= base, f"deletes what the base does not have: {set(deleted) - base}"
    assert {("StatefulSet", "memoryos-redis"), ("Service", "memoryos-redis")} <= set(deleted)
    assert {name for kind, name in deleted if kind == "ScaledObject"} == {
        name for kind, name in base if kind == "ScaledObject"}, "every Redis-list scaler of the base is replaced"
    # Every Deployment of the base takes envFrom (the broker Secret is appended to it).
    for doc in _base_docs():
        if doc["kind"] == "Deployment":
            assert "envFrom" in doc["spec"]["template"]["spec"]["containers"][0], doc["metadata"]["name"]


def test_kubernetes_settings_and_the_cluster_they_name() -> None:
    (patch,) = _docs("config-patch.yaml")
    data = patch["data"]
    check_env("scale-out config-patch", data)
    assert is_cluster_url(data["MEMORYOS_REDIS_URL"])
    seeds, _ = parse_cluster_url(data["MEMORYOS_REDIS_URL"])
    sts = next(d for d in _docs("redis-cluster.yaml") if d["kind"] == "StatefulSet")
    assert sts["spec"]["replicas"] == 6
    pods = {f"{sts['metadata']['name']}-{i}.{sts['spec']['serviceName']}" for i in range(6)}
    assert {host for host, _ in seeds} <= pods
    conf = next(d for d in _docs("redis-cluster.yaml") if d["kind"] == "ConfigMap")["data"]["redis.conf"]
    for line in ("cluster-enabled yes", "appendonly yes", "maxmemory-policy noeviction"):
        assert line in conf
    Settings(redis_url=data["MEMORYOS_REDIS_URL"], broker_url="amqp://u:p@memoryos-rabbitmq:5672/memoryos",
             publish_min_replicas=int(data["MEMORYOS_PUBLISH_MIN_REPLICAS"]),
             publish_replica_timeout=float(data["MEMORYOS_PUBLISH_REPLICA_TIMEOUT"]))


def test_keda_scales_every_worker_on_its_rabbitmq_queue() -> None:
    docs = _docs("keda.yaml")
    (auth,) = [d for d in docs if d["kind"] == "TriggerAuthentication"]
    (ref,) = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "host" and ref["key"] == "MEMORYOS_BROKER_URL" in SETTING_ENV
    deployments = {d["metadata"]["name"]: d for d in _base_docs() if d["kind"] == "Deployment"}
    queues = {}
    for scaled in (d for d in docs if d["kind"] == "ScaledObject"):
        target = deployments[scaled["spec"]["scaleTargetRef"]["name"]]
        command = target["spec"]["template"]["spec"]["containers"][0]["command"]
        consumed = set(parse_command(scaled["metadata"]["name"], command).queues)
        for trigger in scaled["spec"]["triggers"]:
            if trigger["type"] == "rabbitmq":
                assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
                assert trigger["metadata"]["mode"] == "QueueLength"
                queue = trigger["metadata"]["queueName"]
                assert queue in consumed, f"{scaled['metadata']['name']} scales on a queue its pods do not consume"
                queues[queue] = scaled["metadata"]["name"]
            else:
                assert trigger["type"] == "redis-cluster"
                assert trigger["metadata"]["listName"] == Keys("mos").rpc_requests
    assert set(queues) == set(ALL_QUEUES)
