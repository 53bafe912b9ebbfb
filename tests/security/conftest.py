"""A Kafka broker in SASL_SSL mode (SCRAM-SHA-512 over TLS, StandardAuthorizer, the
platform's ACLs), with certificates and passwords generated for this session."""

from __future__ import annotations

import pytest

from voltrisk.harness import TempBroker


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory) -> TempBroker:
    b = TempBroker(tmp_path_factory.mktemp("kafka-secure-home"), secure=True).start()
    yield b
    b.stop()
