"""The embedded Apache Kafka broker: KRaft single node, from pinned Maven jars.

``fetch`` resolves the broker and its runtime dependencies through Maven with
the pinned pom shipped beside this module and copies them into
``.voltrisk/kafka/lib`` once (a stamp file holds the pom's hash, so a second
start does not resolve again). ``start`` formats the storage on first use,
launches ``kafka.Kafka`` on 127.0.0.1 and waits until it answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import uuid
from pathlib import Path

from voltrisk import procs
from voltrisk.errors import UserError
from voltrisk.settings import BrokerSettings, KafkaClientSettings

POM = Path(__file__).with_name("kafka-broker.pom.xml")
MARKER = "kafka.Kafka"


def kafka_dir(s: BrokerSettings) -> Path:
    return s.home.resolve() / "kafka"


def lib_dir(s: BrokerSettings) -> Path:
    return kafka_dir(s) / "lib"


def _pom_hash() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()[:16]


def fetch(s: BrokerSettings, quiet: bool = True) -> Path:
    """Resolve the broker jars into .voltrisk/kafka/lib (no-op when already there)."""
    lib = lib_dir(s)
    stamp = lib / ".pom-hash"
    if stamp.exists() and stamp.read_text() == _pom_hash():
        return lib
    if shutil.which(s.mvn) is None:
        raise UserError(f"Maven ({s.mvn}) is not installed; install it (e.g. `apt-get install maven`) or set VOLTRISK_MVN")
    tmp = lib.with_name("lib.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [s.mvn, "-B", "-f", str(POM), "dependency:copy-dependencies", "-DincludeScope=runtime",
           f"-DoutputDirectory={tmp}"] + (["-q"] if quiet else [])
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        tail = " | ".join((res.stdout + res.stderr).strip().splitlines()[-5:])
        raise UserError(f"Maven could not resolve the Kafka broker jars (is the Maven repository reachable?): {tail}")
    shutil.rmtree(lib, ignore_errors=True)
    tmp.rename(lib)
    stamp.write_text(_pom_hash())
    return lib


def _write_config(s: BrokerSettings) -> Path:
    kd = kafka_dir(s)
    (kd / "data").mkdir(parents=True, exist_ok=True)
    logs = s.home.resolve() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    props = kd / "server.properties"
    if s.broker_security == "sasl_ssl":
        from voltrisk import security

        listeners = security.broker_properties(s.home, s.broker_port, s.broker_controller_port)
    else:
        listeners = [
            f"listeners=PLAINTEXT://127.0.0.1:{s.broker_port},CONTROLLER://127.0.0.1:{s.broker_controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{s.broker_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        ]
    props.touch()
    props.chmod(0o600)  # holds the admin's SCRAM password in sasl_ssl mode
    props.write_text(
        "\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{s.broker_controller_port}",
            *listeners,
            f"log.dirs={kd / 'data'}",
            "num.partitions=1",
            # topics are created explicitly from stream/topics.py
            "auto.create.topics.enable=false",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=6",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "message.max.bytes=16777216",
            "log.retention.hours=168",
            "",
        ])
    )
    (kd / "log4j2.properties").write_text(
        "\n".join([
            "status = warn",
            "appender.file.type = RollingFile",
            "appender.file.name = file",
            f"appender.file.fileName = {logs / 'kafka-server.log'}",
            f"appender.file.filePattern = {logs / 'kafka-server.log.%i'}",
            "appender.file.layout.type = PatternLayout",
            "appender.file.layout.pattern = [%d] %p %m (%c)%n",
            "appender.file.policies.type = Policies",
            "appender.file.policies.size.type = SizeBasedTriggeringPolicy",
            "appender.file.policies.size.size = 50MB",
            "appender.file.strategy.type = DefaultRolloverStrategy",
            "appender.file.strategy.max = 3",
            "rootLogger.level = info",
            "rootLogger.appenderRef.file.ref = file",
            "logger.kafka.name = kafka",
            "logger.kafka.level = info",
            "logger.apache.name = org.apache.kafka",
            "logger.apache.level = warn",
            "",
        ])
    )
    return props


def _java(s: BrokerSettings) -> str:
    java = shutil.which(s.java)
    if java is None:
        raise UserError(f"Java ({s.java}) was not found; install Java 17 (e.g. `apt-get install openjdk-17-jre-headless`) or set VOLTRISK_JAVA")
    return java


def _format_storage(s: BrokerSettings, props: Path) -> None:
    data = kafka_dir(s) / "data"
    mode_file = data / "voltrisk-security"  # the mode the storage was formatted in
    if (data / "meta.properties").exists():
        formatted = mode_file.read_text().strip() if mode_file.exists() else "plaintext"
        if formatted != s.broker_security:
            raise UserError(
                f"the Kafka storage in {data} was formatted for {formatted}, not {s.broker_security} (SCRAM users are "
                "created when the storage is formatted): stop the broker and delete that directory, or use another VOLTRISK_HOME")
        return
    scram = []
    if s.broker_security == "sasl_ssl":
        from voltrisk import security

        scram = security.scram_format_args(s.home)
    cp = f"{lib_dir(s)}/*"
    res = subprocess.run(
        [_java(s), "-cp", cp, "kafka.tools.StorageTool", "format", "-t", uuid.uuid4().hex[:22], "-c", str(props), *scram],
        capture_output=True, text=True,
    )
    if res.returncode != 0:
        raise UserError(f"formatting the Kafka storage in {data} failed: {res.stdout.strip()} {res.stderr.strip()[-300:]}")
    mode_file.write_text(s.broker_security)


def answers(bootstrap: str, timeout_s: float = 3.0, client: KafkaClientSettings | None = None) -> bool:
    """True when a Kafka broker answers a metadata request at BOOTSTRAP (as ``client`` when given)."""
    from aiokafka.admin import AIOKafkaAdminClient

    kw = client.aiokafka_kwargs() if client else {"bootstrap_servers": bootstrap}

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(request_timeout_ms=int(timeout_s * 1000), **kw)
        try:
            await asyncio.wait_for(admin.start(), timeout_s)
            await asyncio.wait_for(admin.describe_cluster(), timeout_s)
            return True
        except Exception:
            return False
        finally:
            await admin.close()

    return asyncio.run(probe())


def service(s: BrokerSettings) -> procs.Service:
    props = kafka_dir(s) / "server.properties"
    argv = [
        _java(s), f"-Xmx{s.broker_heap}", f"-Xms{s.broker_heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={kafka_dir(s) / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={s.home.resolve() / 'logs'}",
        "-cp", f"{lib_dir(s)}/*", MARKER, str(props),
    ]
    bootstrap = f"127.0.0.1:{s.broker_port}"
    client = admin_client(s)
    return procs.Service("kafka", argv, lambda: procs.port_open("127.0.0.1", s.broker_port) and answers(bootstrap, client=client),
                         marker=str(props), start_timeout_s=s.broker_start_timeout_s,
                         supervised=False)  # the JVM itself: the tests and the chaos runner stop and restart it


def admin_client(s: BrokerSettings) -> KafkaClientSettings | None:
    """How this checkout's own tools (health probe, topic creation, ACLs) reach the broker: as the
    admin principal in sasl_ssl mode, None (the default PLAINTEXT client) otherwise."""
    if s.broker_security != "sasl_ssl":
        return None
    from voltrisk import security

    return security.client_settings(s.home, "admin", f"127.0.0.1:{s.broker_port}")


def start(s: BrokerSettings) -> tuple[int, bool]:
    """Start the broker (fetching jars and formatting storage the first time)."""
    props_path = kafka_dir(s) / "server.properties"
    existing = procs.running_pid(s.home, "kafka", str(props_path))
    if existing is not None:
        return existing, False
    for port in (s.broker_port, s.broker_controller_port):
        if procs.port_open("127.0.0.1", port):
            raise UserError(
                f"port {port} on 127.0.0.1 is taken by another process; stop it or choose free ports with "
                "VOLTRISK_BROKER_PORT / VOLTRISK_BROKER_CONTROLLER_PORT"
            )
    _java(s)
    fetch(s)
    if s.broker_security == "sasl_ssl":
        from voltrisk import security

        security.material(s.home).passwords()  # a clear error when `voltrisk security init` has not run
    props = _write_config(s)
    _format_storage(s, props)
    return procs.start(s.home, service(s))


def stop(s: BrokerSettings) -> bool:
    return procs.stop(s.home, "kafka", str(kafka_dir(s) / "server.properties"), timeout_s=60)


def status(s: BrokerSettings) -> dict:
    pid = procs.running_pid(s.home, "kafka", str(kafka_dir(s) / "server.properties"))
    bootstrap = f"127.0.0.1:{s.broker_port}"
    return {
        "pid": pid,
        "bootstrap": bootstrap,
        "answers": procs.port_open("127.0.0.1", s.broker_port) and answers(bootstrap, client=admin_client(s)),
        "security": s.broker_security,
        "log": str(s.home.resolve() / "logs" / "kafka-server.log"),
    }


def _topic_configs(t) -> dict[str, str]:
    configs = {"retention.ms": str(t.retention_ms)} if t.retention_ms else {}
    if t.compact:
        configs["cleanup.policy"] = "compact"
    return configs


async def create_topics(k: KafkaClientSettings) -> list[str]:
    """Create every topic of stream/topics.py that does not exist yet; return those created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from stream import topics as T

    admin = AIOKafkaAdminClient(**k.aiokafka_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(
                t.name,
                T.partitions_for(t, k.telemetry_partitions, k.other_partitions),
                k.replication_factor,
                topic_configs=_topic_configs(t),
            )
            for t in T.ALL
            if t.name not in existing
        ]
        if new:
            await admin.create_topics(new)
        return [t.name for t in new]
    finally:
        await admin.close()


async def commit_offsets(k: KafkaClientSettings, group: str, offsets: dict) -> None:
    """Commit ``offsets`` ({TopicPartition: next offset}) for consumer group ``group``
    without joining it: where a new or moved group starts reading."""
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(**k.aiokafka_kwargs(), group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        c.assign(list(offsets))
        await c.commit(offsets)
    finally:
        await c.stop()
