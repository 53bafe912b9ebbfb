"""SASL/SCRAM over TLS against a real broker: voltrisk clients get through as their
own principal, and a wrong password, an untrusted certificate, a plaintext client or
a principal without an ACL is refused quickly with a sentence saying why."""

from __future__ import annotations

import asyncio
import json
import ssl
import stat
import subprocess
import sys
import time
import uuid

import pytest

from simulators.fleet import Event
from simulators.sink import KafkaSink
from stream.records import DecisionV1
from voltrisk import security
from voltrisk.errors import UserError
from voltrisk.harness import REPO, platform_env

pytestmark = pytest.mark.integration


def test_init_writes_a_ca_a_broker_certificate_for_localhost_and_private_passwords(tmp_path):
    from cryptography import x509

    m = security.init(tmp_path)
    for private in (m.ca_key, m.broker_keystore, m.credentials):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    certs = x509.load_pem_x509_certificates(m.broker_keystore.read_bytes())
    san = certs[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1"}
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    certs[0].verify_directly_issued_by(x509.load_pem_x509_certificate(m.ca_cert.read_bytes()))
    ssl.create_default_context(cafile=str(m.ca_cert))  # a client can load the CA
    passwords = m.passwords()
    assert sorted(passwords) == sorted(security.PRINCIPALS) and len(set(passwords.values())) == len(passwords)
    assert security.init(tmp_path).passwords() == passwords  # a second init keeps them
    assert security.init(tmp_path, force=True).passwords() != passwords


def _decision(alert_id: str) -> DecisionV1:
    return DecisionV1(event_id=f"d-{alert_id}", ts_ms=int(time.time() * 1000), alert_id=alert_id, status="confirmed",
                      investigator="test", note="sasl round trip")


def test_dashboard_producer_and_warehouse_consumer_round_trip_over_sasl_ssl(secure_broker):
    """The dashboard's decisions producer (principal dashboard) and the warehouse sink's
    consumer (principal sink), each built by voltrisk's own code."""
    from dashboard.bus import publish
    from voltrisk.settings import WarehouseSettings
    from warehouse.service import consumer_factory

    alert = f"a-{uuid.uuid4().hex[:8]}"
    publish(_decision(alert), secure_broker.client("dashboard"))

    w = WarehouseSettings(sink_group=f"voltrisk-sink-{uuid.uuid4().hex[:6]}")

    async def consume() -> list[dict]:
        c = consumer_factory(secure_broker.client("sink"), w)()
        c.subscribe(["fraud.decisions.v1"])
        await c.start()
        try:
            found = []
            deadline = time.monotonic() + 30
            while not found and time.monotonic() < deadline:
                for records in (await c.getmany(timeout_ms=1000)).values():
                    found += [json.loads(r.value) for r in records if r.key == alert.encode()]
            await c.commit()  # the group's offsets: allowed by the sink's group ACL
            return found
        finally:
            await c.stop()

    got = asyncio.run(consume())
    assert [(d["alert_id"], d["status"]) for d in got] == [(alert, "confirmed")]


def test_the_worker_principal_reads_investigators_decisions(secure_broker):
    """The fraud worker takes the decisions into its engine: its principal, in a group of
    the worker's prefix, may read fraud.decisions.v1 (without the ACL its consumer stopped)."""
    from aiokafka import AIOKafkaConsumer

    from dashboard.bus import publish
    from voltrisk.security import WORKER_GROUP_PREFIX

    alert = f"a-{uuid.uuid4().hex[:8]}"
    publish(_decision(alert), secure_broker.client("dashboard"))

    async def consume() -> list[str]:
        c = AIOKafkaConsumer("fraud.decisions.v1", group_id=f"{WORKER_GROUP_PREFIX}-{uuid.uuid4().hex[:6]}",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             **secure_broker.client("worker").aiokafka_kwargs())
        await c.start()
        try:
            found: list[str] = []
            deadline = time.monotonic() + 30
            while not found and time.monotonic() < deadline:
                for records in (await c.getmany(timeout_ms=1000)).values():
                    found += [json.loads(r.value)["status"] for r in records if r.key == alert.encode()]
            await c.commit()
            return found
        finally:
            await c.stop()

    assert asyncio.run(consume()) == ["confirmed"]


def _send_one(k, topic: str = "ev.dynamics.v1") -> None:
    from contracts.examples import RAW_EXAMPLES

    rec = RAW_EXAMPLES["ev.dynamics.v1"].record

    async def go():
        sink = KafkaSink("WGS84", settings=k)
        await sink.start()
        try:
            await sink.send([Event(rec.ts_ms, topic, "LTESTSASL00000001", rec)])
            await sink.flush()
            assert sink.errors == 0, sink.last_error
        finally:
            await sink.stop()

    asyncio.run(asyncio.wait_for(go(), 60))


def _refused(k, topic: str = "ev.dynamics.v1", within_s: float = 20) -> str:
    t0 = time.monotonic()
    with pytest.raises(UserError) as e:
        _send_one(k, topic)
    assert time.monotonic() - t0 < within_s, "a refusal must not wait for a timeout"
    return str(e.value)


def test_the_simulator_principal_produces_raw_telemetry(secure_broker):
    _send_one(secure_broker.client("simulator"))


def test_a_wrong_password_is_refused_with_a_sentence(secure_broker):
    bs = secure_broker.bootstrap
    msg = _refused(secure_broker.client("simulator", kafka_sasl_password="not-" + uuid.uuid4().hex))
    assert msg == (f"Kafka at {bs} refused the SCRAM-SHA-512 login of user 'simulator': wrong user name or password; "
                   "check VOLTRISK_KAFKA_SASL_USERNAME and VOLTRISK_KAFKA_SASL_PASSWORD")
    assert "not-" not in msg
    assert "refused the SCRAM-SHA-512 login of user 'intruder'" in _refused(
        secure_broker.client("simulator", kafka_sasl_username="intruder"))


def test_an_untrusted_broker_certificate_is_refused(secure_broker, tmp_path):
    other_ca = security.init(tmp_path).ca_cert
    msg = _refused(secure_broker.client("simulator", kafka_ssl_cafile=other_ca))
    assert msg.startswith(f"the certificate of Kafka at {secure_broker.bootstrap} is not trusted")
    assert "VOLTRISK_KAFKA_SSL_CAFILE" in msg


def test_a_plaintext_client_is_refused(secure_broker):
    from voltrisk.settings import KafkaClientSettings

    msg = _refused(KafkaClientSettings(kafka_bootstrap=secure_broker.bootstrap))
    assert msg.startswith(f"Kafka at {secure_broker.bootstrap} does not speak PLAINTEXT"), msg


def test_a_principal_without_a_write_acl_is_refused(secure_broker):
    # the dashboard may write investigators' decisions, not telemetry
    msg = _refused(secure_broker.client("dashboard"))
    assert msg == (f"Kafka at {secure_broker.bootstrap} refused user 'dashboard' access to topic ev.dynamics.v1: no ACL "
                   "allows it; grant one with `voltrisk security acls` or use the right principal")
    # and the simulator may not forge the gate's output
    assert "refused user 'simulator' access to topic clean.ev.dynamics.v1" in _refused(
        secure_broker.client("simulator"), "clean.ev.dynamics.v1")


def test_a_warehouse_sink_without_read_acls_stops_with_a_sentence(secure_broker, tmp_path):
    """`voltrisk warehouse serve` logged in as the simulator, which may read nothing."""
    env = {**platform_env(tmp_path, secure_broker.bootstrap, uuid.uuid4().hex[:6],
                          VOLTRISK_SINK_GROUP=f"voltrisk-sink-{uuid.uuid4().hex[:6]}"),
           **secure_broker.env("simulator")}
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "voltrisk", "warehouse", "serve"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out[-3000:]
    assert f"the warehouse sink stopped: Kafka at {secure_broker.bootstrap} refused user 'simulator'" in " ".join(out.split())
    assert time.monotonic() - t0 < 90
    assert env["VOLTRISK_KAFKA_SASL_PASSWORD"] not in out


def test_a_worker_with_a_wrong_password_stops_with_a_sentence(secure_broker, tmp_path):
    """`voltrisk worker run` as the worker principal with a wrong password exits at once with
    the broker's refusal in one sentence, before it announces it is ready (Faust alone ends
    in a traceback saying "Unable to bootstrap")."""
    run = uuid.uuid4().hex[:6]
    wrong = "not-" + uuid.uuid4().hex
    env = {**platform_env(tmp_path, secure_broker.bootstrap, run, VOLTRISK_WORKER_APP_ID=f"voltrisk-worker-{run}"),
           **secure_broker.env("worker"), "VOLTRISK_KAFKA_SASL_PASSWORD": wrong}
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "voltrisk", "worker", "run"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out[-3000:]
    assert (f"the worker did not start: Kafka at {secure_broker.bootstrap} refused the SCRAM-SHA-512 login of user "
            "'worker': wrong user name or password") in " ".join(out.split())
    assert time.monotonic() - t0 < 60
    assert wrong not in out
    assert not (tmp_path / "home" / "run" / "worker.ready").exists()


def test_the_broker_serves_no_plaintext_listener(secure_broker):
    props = (secure_broker.home / "kafka" / "server.properties").read_text()
    listeners = next(line for line in props.splitlines() if line.startswith("listeners="))
    assert listeners == (f"listeners=SASL_SSL://127.0.0.1:{secure_broker.settings.broker_port},"
                         f"CONTROLLER://127.0.0.1:{secure_broker.settings.broker_controller_port}")
    assert "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL" in props
    assert "allow.everyone.if.no.acl.found=false" in props
    assert stat.S_IMODE((secure_broker.home / "kafka" / "server.properties").stat().st_mode) == 0o600
    # a client without a certificate from our CA cannot talk to the controller
    ctx = ssl.create_default_context(cafile=str(security.material(secure_broker.home).ca_cert))
    import socket

    with socket.create_connection(("127.0.0.1", secure_broker.settings.broker_controller_port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"\x00\x00\x00\x01\x00")
                if not tls.recv(1):
                    raise ConnectionResetError("closed")
