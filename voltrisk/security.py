"""SASL/SCRAM over TLS for the local broker: certificates, SCRAM users, ACLs.

``init`` writes, once, into ``$VOLTRISK_HOME/security``: a self-signed CA
(``ca.pem``, ``ca.key``), the broker's key and certificate for 127.0.0.1 and
localhost signed by it (``broker.pem``, a PEM keystore Kafka reads as is), and a
random SCRAM-SHA-512 password for each voltrisk principal (``credentials.json``).
Every private file is mode 0600. With ``VOLTRISK_BROKER_SECURITY=sasl_ssl`` the
broker formats its storage with those users, serves one SASL_SSL listener and
authorizes with ``StandardAuthorizer`` (nothing is allowed without an ACL);
``apply_acls`` then gives each principal what it needs and nothing more:

============ =====================================================================
principal    may
============ =====================================================================
admin        everything (super user): create topics, apply ACLs
worker       read raw and clean topics; write clean, derived, DLQ and alert topics;
             consumer groups prefixed ``voltrisk-worker``
sink         read every topic the warehouse stores; groups prefixed ``voltrisk-sink``
simulator    write the raw topics (fleet and claims simulators, load generator)
dashboard    write fraud.decisions.v1; describe topics and ``voltrisk-`` groups (lag)
============ =====================================================================

The controller listener speaks TLS with a client certificate required: only the
broker, holding ``broker.pem``, connects there (principal ``CN=voltrisk-broker``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from voltrisk.errors import UserError
from voltrisk.settings import KafkaClientSettings

PRINCIPALS = ("admin", "worker", "sink", "simulator", "dashboard")
BROKER_CN = "voltrisk-broker"
MECHANISM = "SCRAM-SHA-512"
WORKER_GROUP_PREFIX = "voltrisk-worker"
SINK_GROUP_PREFIX = "voltrisk-sink"


@dataclass(frozen=True)
class Material:
    """Where ``init`` put the CA, the broker's keystore and the SCRAM passwords."""

    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def broker_keystore(self) -> Path:
        return self.dir / "broker.pem"

    @property
    def credentials(self) -> Path:
        return self.dir / "credentials.json"

    def exists(self) -> bool:
        return all(p.exists() for p in (self.ca_cert, self.broker_keystore, self.credentials))

    def passwords(self) -> dict[str, str]:
        if not self.exists():
            raise UserError(f"no TLS certificates or SCRAM users in {self.dir}: create them with `voltrisk security init`")
        return json.loads(self.credentials.read_text())

    def password(self, principal: str) -> str:
        pw = self.passwords()
        if principal not in pw:
            raise UserError(f"unknown principal {principal!r}; choose from {', '.join(PRINCIPALS)}")
        return pw[principal]


def material(home: Path) -> Material:
    return Material(home.resolve() / "security")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def init(home: Path, *, days: int = 825, force: bool = False) -> Material:
    """Create the CA, the broker certificate and the SCRAM passwords (kept when they exist, unless ``force``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    m = material(home)
    if m.exists() and not force:
        return m
    m.dir.mkdir(parents=True, exist_ok=True)
    os.chmod(m.dir, 0o700)
    now = dt.datetime.now(dt.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("voltrisk local CA")).issuer_name(name("voltrisk local CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(name(BROKER_CN)).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # serverAuth for the listeners, clientAuth for the broker's own connection to the controller
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    _write_private(m.ca_key, ca_key.private_bytes(pem, pkcs8, serialization.NoEncryption()))
    m.ca_cert.write_bytes(ca.public_bytes(pem))
    # Kafka's PEM keystore: the private key (PKCS#8) followed by the certificate chain
    _write_private(m.broker_keystore, key.private_bytes(pem, pkcs8, serialization.NoEncryption())
                   + cert.public_bytes(pem) + ca.public_bytes(pem))
    # url-safe passwords: no character the storage tool's --add-scram syntax would need quoted
    _write_private(m.credentials, json.dumps({p: secrets.token_urlsafe(24) for p in PRINCIPALS}, indent=1).encode())
    return m


def client_settings(home: Path, principal: str, bootstrap: str, **overrides) -> KafkaClientSettings:
    """Client settings of ``principal`` against the local SASL_SSL broker."""
    m = material(home)
    kw = dict(kafka_bootstrap=bootstrap, kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism=MECHANISM,
              kafka_sasl_username=principal, kafka_sasl_password=m.password(principal), kafka_ssl_cafile=m.ca_cert)
    return KafkaClientSettings(**{**kw, **overrides})


def admin_settings() -> KafkaClientSettings:
    """Who creates topics and ACLs: the configured client (``VOLTRISK_KAFKA_*``, e.g. a cluster's
    admin) when it logs in, else the local broker's admin principal in sasl_ssl mode, else PLAINTEXT."""
    from voltrisk.settings import BrokerSettings

    k = KafkaClientSettings()
    b = BrokerSettings()
    if k.kafka_sasl_username or b.broker_security != "sasl_ssl":
        return k
    return client_settings(b.home, "admin", f"127.0.0.1:{b.broker_port}")


def client_env(home: Path, principal: str) -> dict[str, str]:
    """``VOLTRISK_KAFKA_*`` variables that make a voltrisk process connect as ``principal``."""
    m = material(home)
    return {
        "VOLTRISK_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "VOLTRISK_KAFKA_SASL_MECHANISM": MECHANISM,
        "VOLTRISK_KAFKA_SASL_USERNAME": principal,
        "VOLTRISK_KAFKA_SASL_PASSWORD": m.password(principal),
        "VOLTRISK_KAFKA_SSL_CAFILE": str(m.ca_cert),
    }


def broker_properties(home: Path, port: int, controller_port: int) -> list[str]:
    """The listener, TLS, SASL and authorizer lines of the secure broker's server.properties."""
    m = material(home)
    admin_pw = m.password("admin")
    return [
        f"listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=SASL_SSL://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=SASL_SSL",
        "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL",
        f"sasl.enabled.mechanisms={MECHANISM}",
        f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
        # a PASSWORD-type config: Kafka logs it as [hidden]
        f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule "
        f'required username="admin" password="{admin_pw}";',
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={m.broker_keystore}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={m.ca_cert}",
        # only a holder of a certificate from our CA (the broker itself) talks to the controller
        "listener.name.controller.ssl.client.auth=required",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        f"super.users=User:admin;User:CN={BROKER_CN}",
        "allow.everyone.if.no.acl.found=false",
    ]


def scram_format_args(home: Path) -> list[str]:
    """``--add-scram`` arguments that create every principal when the storage is formatted."""
    return [a for p, pw in material(home).passwords().items() for a in ("--add-scram", f"{MECHANISM}=[name={p},password={pw}]")]


# --- ACLs -------------------------------------------------------------------

# Kafka's protocol codes (org.apache.kafka.common.acl / resource)
_RESOURCE = {"topic": 2, "group": 3}
_PATTERN = {"literal": 3, "prefixed": 4}
_OPERATION = {"read": 3, "write": 4, "describe": 8}
_ALLOW = 3


@dataclass(frozen=True)
class Grant:
    principal: str
    resource: str  # topic | group
    name: str
    pattern: str  # literal | prefixed
    operations: tuple[str, ...]

    def __str__(self) -> str:
        star = "*" if self.pattern == "prefixed" else ""
        return f"User:{self.principal} {'+'.join(self.operations)} {self.resource} {self.name}{star}"


def grants(worker_group_prefix: str = WORKER_GROUP_PREFIX, sink_group_prefix: str = SINK_GROUP_PREFIX) -> list[Grant]:
    """What each voltrisk principal may do, from the topic table (stream/topics.py)."""
    from stream import topics as T
    from warehouse.sink import ROUTES

    raw = [t.name for t in T.RAW]
    clean = [t.name for t in T.CLEAN]
    written_by_worker = clean + [T.DLQ.name, T.ALERTS.name, T.FRAUD_CLAIMS.name, T.FRAUD_ENTITIES.name,
                                 T.FEATURE_STATE.name] + [t.name for t in T.DERIVED]
    out: list[Grant] = []

    def topics(principal: str, names, *ops: str) -> None:
        out.extend(Grant(principal, "topic", n, "literal", ops) for n in dict.fromkeys(names))

    topics("worker", raw + clean + [T.FEATURE_STATE.name, T.REDRIVE.name, T.DECISIONS.name], "read", "describe")
    topics("worker", written_by_worker, "write", "describe")
    out.append(Grant("worker", "group", worker_group_prefix, "prefixed", ("read", "describe")))
    topics("sink", ROUTES, "read", "describe")
    out.append(Grant("sink", "group", sink_group_prefix, "prefixed", ("read", "describe")))
    topics("simulator", raw, "write", "describe")
    topics("dashboard", [T.DECISIONS.name], "write", "describe")
    # the pipeline page reads consumer lag: committed offsets of the platform's groups, end offsets of their topics
    topics("dashboard", [t.name for t in T.ALL], "describe")
    out.append(Grant("dashboard", "group", "voltrisk-", "prefixed", ("describe",)))
    return out


async def apply_acls(admin: KafkaClientSettings, wanted: list[Grant], timeout_s: float = 30.0) -> int:
    """Create the ACL bindings of ``wanted`` (creating an existing binding is a no-op); return how many."""
    import asyncio

    from aiokafka.client import AIOKafkaClient
    from aiokafka.protocol.admin import CreateAclsRequest

    client = AIOKafkaClient(request_timeout_ms=int(timeout_s * 1000), **admin.aiokafka_kwargs())
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        node = client.get_random_node()
        n = 0
        for g in wanted:
            for op in g.operations:
                req = CreateAclsRequest(_RESOURCE[g.resource], g.name, _PATTERN[g.pattern], f"User:{g.principal}", "*",
                                        _OPERATION[op], _ALLOW)
                resp = await asyncio.wait_for(client.send(node, req), timeout_s)
                for code, message in resp.creation_responses:
                    if code:
                        raise UserError(f"the broker refused the ACL {g} ({op}): error {code} {message or ''}".strip())
                n += 1
        return n
    finally:
        await client.close()


# --- errors -----------------------------------------------------------------

def explain(exc: BaseException, k: KafkaClientSettings) -> str | None:
    """A sentence naming what the broker refused and what to do, or None when ``exc`` is no refusal."""
    from aiokafka import errors as E

    who = f"user {k.kafka_sasl_username!r}" if k.kafka_sasl_username else "this client"
    text = f"{exc.__class__.__name__}: {exc}"
    if isinstance(exc, E.SaslAuthenticationFailed) or "Authentication failed" in text or "SaslAuthenticat" in text:
        return (f"Kafka at {k.kafka_bootstrap} refused the {k.kafka_sasl_mechanism} login of {who}: wrong user name or "
                "password; check VOLTRISK_KAFKA_SASL_USERNAME and VOLTRISK_KAFKA_SASL_PASSWORD")
    if isinstance(exc, E.TopicAuthorizationFailedError):
        arg = exc.args[0] if exc.args else ""
        topics = ", ".join(sorted(arg)) if isinstance(arg, (set, list, tuple, frozenset)) else str(arg)
        return (f"Kafka at {k.kafka_bootstrap} refused {who} access to topic {topics or '(see the broker log)'}: "
                "no ACL allows it; grant one with `voltrisk security acls` or use the right principal")
    if isinstance(exc, E.GroupAuthorizationFailedError):
        return (f"Kafka at {k.kafka_bootstrap} refused {who} its consumer group: no ACL allows it; "
                "grant one with `voltrisk security acls` or use the right principal")
    if isinstance(exc, E.ClusterAuthorizationFailedError):
        return f"Kafka at {k.kafka_bootstrap} refused {who} a cluster operation: only the admin principal may do this"
    return None


async def refusal(exc: BaseException, k: KafkaClientSettings, timeout_s: float = 10.0) -> str | None:
    """Like ``explain``, and when a client could not even connect (aiokafka only logs why and raises
    "Unable to bootstrap"), open one connection as ``k`` to find out: a refused login, an untrusted
    certificate or a listener that speaks another protocol. None when nobody answers at all."""
    import asyncio
    import ssl

    from aiokafka import errors as E
    from aiokafka.conn import create_conn

    sentence = explain(exc, k)
    if sentence is not None or not isinstance(exc, E.KafkaConnectionError):
        return sentence
    kw = k.aiokafka_kwargs()
    host, _, port = kw.pop("bootstrap_servers").split(",")[0].strip().rpartition(":")
    try:
        conn = await asyncio.wait_for(create_conn(host, int(port), request_timeout_ms=int(timeout_s * 1000), **kw), timeout_s)
    except E.SaslAuthenticationFailed as e:
        return explain(e, k)
    except ssl.SSLCertVerificationError as e:
        return (f"the certificate of Kafka at {k.kafka_bootstrap} is not trusted ({e.verify_message}): set "
                "VOLTRISK_KAFKA_SSL_CAFILE to the CA that signed it ($VOLTRISK_HOME/security/ca.pem locally)")
    except (ssl.SSLError, E.KafkaConnectionError, ConnectionResetError) as e:
        return (f"Kafka at {k.kafka_bootstrap} does not speak {k.kafka_security_protocol} ({e.__class__.__name__}); set "
                "VOLTRISK_KAFKA_SECURITY_PROTOCOL to what its listener serves (PLAINTEXT for `make up`, SASL_SSL with "
                "VOLTRISK_BROKER_SECURITY=sasl_ssl)")
    except (OSError, asyncio.TimeoutError):
        return None  # nobody answers: no refusal, the caller says how to start the broker
    conn.close()
    return None
