"""Every parameterised query, run with hostile values: they are bound, never formatted into SQL."""

from __future__ import annotations

import re

import pytest
from dashboard_seed import VEHICLES

from dashboard import repository

HOSTILE = "x' OR 1=1 --"
HOSTILE_VALUES = {"String": HOSTILE, "Array(String)": [HOSTILE, "'); DROP TABLE dlq; --"]}
# harmless values for numeric placeholders, so only the string ones carry the attack
NUMBERS = {"UInt32": 1000}
PLACEHOLDER = re.compile(r"\{(\w+):([\w()]+)\}")


def parameterised() -> list[str]:
    return sorted(name for name, sql in repository.QUERIES.items() if PLACEHOLDER.search(sql))


@pytest.fixture(scope="module")
def client(seeded_url):
    c = repository.connect(seeded_url, "default", None)
    yield c
    c.close()


@pytest.mark.parametrize("name", [n for n in parameterised()
                                  if any(t in HOSTILE_VALUES for _, t in PLACEHOLDER.findall(repository.QUERIES[n]))])
def test_hostile_strings_match_nothing(client, name):
    params = {p: HOSTILE_VALUES.get(t, NUMBERS.get(t)) for p, t in PLACEHOLDER.findall(repository.QUERIES[name])}
    assert repository.run(client, name, params).empty


def test_the_same_query_finds_real_rows(client):
    assert list(repository.run(client, "vehicles", {"prefix": "veh-0", "limit": 100})["vehicle_id"]) == sorted(
        v for v, _ in VEHICLES if v.startswith("veh-0"))
    assert len(repository.run(client, "vehicle_activity", {"vehicle_id": "veh-03"})) == 2  # dynamics and state


def test_every_placeholder_has_a_type_and_no_value_is_formatted_in():
    for name, sql in repository.QUERIES.items():
        assert "%s" not in sql and "{}" not in sql, name
        for param, ch_type in PLACEHOLDER.findall(sql):
            assert ch_type in {*HOSTILE_VALUES, *NUMBERS}, f"{name}: {{{param}:{ch_type}}}"


def test_the_endpoint_refuses_writes_even_through_the_dashboard_client(client):
    from clickhouse_connect.driver.exceptions import DatabaseError

    with pytest.raises(DatabaseError, match="read-only"):
        client.command("DROP TABLE dlq")
