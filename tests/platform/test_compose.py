"""compose.yaml cannot run on the development machines (no Docker engine), so it is
checked against the code here: every VOLTRISK_ setting a service is given is one the
code reads, every command is a voltrisk verb, the ClickHouse users the services log in
as exist (read-only where they must be) with the passwords compose hands the server, the
fraud stage runs in one worker of its own group with its state on a volume, the
services that simulate get the freMTPL2 tables, and the fraud-model one-shot, run as
compose runs it, leaves a model where the fraud worker looks."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from pydantic_settings import BaseSettings
from typer.testing import CliRunner

import voltrisk.settings as vs
from dashboard.access import AccessSettings
from pricing.settings import PricingSettings
from voltrisk.cli import app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
USERS = ET.parse(ROOT / "deploy" / "clickhouse" / "users.xml").getroot()
# VOLTRISK_HOME of the image (Dockerfile ENV), where the services keep their state
IMAGE_HOME = re.search(r"VOLTRISK_HOME=(\S+)", (ROOT / "Dockerfile").read_text()).group(1)
SECRETS = {name: f"test-{name.lower()}" for name in (
    "VOLTRISK_CLICKHOUSE_PASSWORD", "VOLTRISK_DASHBOARD_CLICKHOUSE_PASSWORD", "VOLTRISK_FRAUD_CLICKHOUSE_PASSWORD",
    "VOLTRISK_PSEUDONYM_KEY")}
# read straight from the environment, not through a settings class
PLAIN_ENV = {"VOLTRISK_FREMTPL2_DIR", "VOLTRISK_CLICKHOUSE_TIMEOUT_S", "VOLTRISK_HOME"}


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${X}``, ``${X:-default}`` and ``${X:?error}`` against ``env``."""
    def one(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise AssertionError(f"compose needs {name}: {arg}")
        return arg or ""
    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", one, str(value))


def _voltrisk_services() -> dict[str, dict]:
    return {name: s for name, s in SERVICES.items() if s.get("image") == "voltrisk:latest"}


def _env(name: str) -> dict[str, str]:
    return {k: _interpolate(v, SECRETS) for k, v in SERVICES[name].get("environment", {}).items()}


def _argv(service: dict) -> list[str]:
    entry = service.get("entrypoint") or ["voltrisk"]
    return [*entry[1:], *service.get("command", [])] if entry[0] == "voltrisk" else []


def _settings_fields() -> set[str]:
    classes = [c for c in vars(vs).values() if isinstance(c, type) and issubclass(c, BaseSettings) and c is not BaseSettings]
    return {f"VOLTRISK_{f.upper()}" for c in [*classes, PricingSettings, AccessSettings] for f in c.model_fields}


def _mounts(service: dict) -> dict[str, str]:
    """Container path -> what is mounted there (a volume name or a host path)."""
    out = {}
    for v in service.get("volumes", []):
        source, target = _interpolate(v, {}).split(":")[:2]
        out[target] = source
    return out


def test_every_voltrisk_setting_compose_gives_is_one_the_code_reads():
    known = _settings_fields() | PLAIN_ENV
    for name in _voltrisk_services():
        unknown = sorted(set(_env(name)) - known)
        assert not unknown, f"{name}: {unknown} are read by no settings class"


@pytest.mark.parametrize("name", sorted(n for n, s in _voltrisk_services().items() if "command" in s or "entrypoint" in s))
def test_every_voltrisk_service_runs_a_voltrisk_verb(name):
    """(``tools`` runs none of its own: the pricing team's commands are given to ``run``.)"""
    argv = _argv(SERVICES[name])
    if not argv:  # a shell one-shot: each voltrisk command in it
        script = " ".join(SERVICES[name]["entrypoint"][1:])
        argvs = [c.split("&&")[0].split() for c in script.split("voltrisk ")[1:]]
    else:
        argvs = [argv]
    for a in argvs:
        verb = list(itertools.takewhile(lambda w: not w.startswith("-"), a))[:2]
        out = CliRunner().invoke(app, [*verb, "--help"])
        assert out.exit_code == 0, f"{name}: `voltrisk {' '.join(verb)}` is no verb: {out.output[-300:]}"


def test_the_clickhouse_users_the_services_log_in_as_exist_with_the_passwords_compose_gives_the_server():
    server_env = _env("clickhouse")
    users = {u.tag: u for u in USERS.find("users")}
    profiles = {p.tag: p for p in USERS.find("profiles")}
    for user in users.values():
        secret = user.find("password").get("from_env")
        assert secret in server_env, f"users.xml's {user.tag} password comes from {secret}, which compose does not set"
    logins = {  # service -> (user, password setting, whether it must be read-only)
        "dashboard": ("VOLTRISK_DASHBOARD_CLICKHOUSE_USER", "VOLTRISK_DASHBOARD_CLICKHOUSE_PASSWORD", True),
        "fraud": ("VOLTRISK_WORKER_CLICKHOUSE_USER", "VOLTRISK_WORKER_CLICKHOUSE_PASSWORD", True),
    }
    for service, (user_key, password_key, readonly) in logins.items():
        env = _env(service)
        user = users[env[user_key]]
        assert env[password_key] == server_env[user.find("password").get("from_env")], service
        if readonly:
            assert profiles[user.find("profile").text].find("readonly").text in ("1", "2"), service
    assert urlparse(_env("fraud")["VOLTRISK_WORKER_CLICKHOUSE_URL"]).hostname == "clickhouse"
    assert urlparse(_env("dashboard")["VOLTRISK_DASHBOARD_CLICKHOUSE_URL"]).hostname == "clickhouse"


def test_the_fraud_stage_runs_alone_in_one_worker_with_its_state_on_a_volume():
    fraud = vs.WorkerSettings(**{k.removeprefix("VOLTRISK_").lower(): v for k, v in _env("fraud").items()
                                 if k.removeprefix("VOLTRISK_").lower() in vs.WorkerSettings.model_fields})
    scaled = vs.WorkerSettings(**{k.removeprefix("VOLTRISK_").lower(): v for k, v in _env("worker").items()
                                  if k.removeprefix("VOLTRISK_").lower() in vs.WorkerSettings.model_fields})
    assert fraud.stages == {"fraud"} and "fraud" not in scaled.stages
    # its own consumer group (so it is assigned every claims partition), under the workers' ACL prefix
    assert fraud.worker_app_id != scaled.worker_app_id and fraud.worker_app_id.startswith(scaled.worker_app_id)
    assert SERVICES["fraud"].get("deploy", {}).get("replicas", 1) == 1
    volume = _mounts(SERVICES["fraud"]).get(IMAGE_HOME)
    assert volume in COMPOSE["volumes"], f"the fraud worker's home {IMAGE_HOME} is on no named volume"
    # the model is made on that volume before the fraud worker starts
    assert _mounts(SERVICES["fraud-model"]).get(IMAGE_HOME) == volume
    assert SERVICES["fraud"]["depends_on"]["fraud-model"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", ["simulator", "fraud-model", "tools"])
def test_the_services_that_simulate_get_the_fremtpl2_tables(name):
    inside = _env(name)["VOLTRISK_FREMTPL2_DIR"]
    host = _mounts(SERVICES[name])[inside]
    assert (ROOT / host / "freMTPL2freq.csv.gz").exists() and (ROOT / host / "freMTPL2sev.csv").exists()


def test_the_fraud_model_one_shot_leaves_a_model_where_the_fraud_worker_looks(tmp_path):
    env = {**os.environ, **_env("fraud-model"), "VOLTRISK_HOME": str(tmp_path / "home"),
           "VOLTRISK_FREMTPL2_DIR": str((ROOT / _mounts(SERVICES["fraud-model"])["/data/freMTPL2"]).resolve())}
    run = lambda: subprocess.run([sys.executable, "-m", "voltrisk", *_argv(SERVICES["fraud-model"])], env=env,  # noqa: E731
                                 cwd=tmp_path, capture_output=True, text=True, timeout=600)
    first = run()
    assert first.returncode == 0, first.stderr[-2000:]
    model = tmp_path / "home" / "fraud" / "fraud_model.json"
    assert "fraud model trained on a simulated book" in first.stderr and model.stat().st_size > 0
    made = model.stat().st_mtime_ns
    again = run()  # a restart of the stack keeps the model there (or the one put in its place)
    assert again.returncode == 0 and f"fraud model {model}" in again.stderr and model.stat().st_mtime_ns == made


def test_the_pricing_registry_is_one_volume_the_tools_write_and_the_worker_and_dashboard_read():
    """Each container has its own file system: a registry in one is no registry for the
    others. The image makes the directory the user's, so a new volume there is too."""
    registry = {name: _env(name).get("VOLTRISK_MODEL_REGISTRY_DIR") for name in ("worker", "dashboard", "tools")}
    assert len(set(registry.values())) == 1 and registry["worker"].startswith(IMAGE_HOME + "/"), registry
    path = registry["worker"]
    volumes = {name: _mounts(SERVICES[name]).get(path) for name in registry}
    assert len(set(volumes.values())) == 1 and volumes["tools"] in COMPOSE["volumes"], volumes
    assert not any(v.endswith(":ro") for v in SERVICES["tools"]["volumes"] if v.startswith(volumes["tools"] + ":"))
    assert f"mkdir -p {path}" in (ROOT / "Dockerfile").read_text()
    assert "/data/freMTPL2" in _mounts(SERVICES["tools"])  # pricing trains on the freMTPL2 tables
    out = CliRunner().invoke(app, ["pricing", "telematics", "--help"])
    assert out.exit_code == 0 and "--register" in out.output
