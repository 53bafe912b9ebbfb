"""The published contract: generated files are current, self-consistent and agree
with the gate; the offline validator CLI; the integration guide's examples."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import msgspec
import pytest
import yaml
from typer.testing import CliRunner

from contracts.cli import app
from contracts.examples import EXAMPLE_VIN, RAW_EXAMPLES
from contracts.export import ASYNCAPI_FILE, render
from gate_corpus import CASES, DYN, header_list, value_dict
from stream import topics
from stream.gate import REASONS

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "contracts"
GUIDE = ROOT / "docs" / "integration.md"
RENDERED = render()


@pytest.mark.parametrize("rel", sorted(RENDERED))
def test_committed_contract_matches_the_types(rel):
    committed = CONTRACTS / rel
    assert committed.is_file(), f"{committed} missing: run `voltrisk contracts export`"
    assert committed.read_text(encoding="utf-8") == RENDERED[rel], (
        f"{committed} is stale: run `voltrisk contracts export` and commit the result")


def test_no_stray_schema_files():
    assert sorted(p.name for p in (CONTRACTS / "schemas").glob("*.json")) == sorted(
        f"{t.name}.json" for t in topics.ALL if t.record is not None)


def _resolve(doc: dict, ref: str):
    node = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _refs(node):
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for child in node.values():
            yield from _refs(child)
    elif isinstance(node, list):
        for child in node:
            yield from _refs(child)


def test_asyncapi_has_a_channel_per_raw_clean_and_dlq_topic_and_every_ref_resolves():
    doc = yaml.safe_load(RENDERED[ASYNCAPI_FILE])
    assert doc["asyncapi"] == "3.0.0"
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {t.name for t in (*topics.RAW, *topics.CLEAN, topics.DLQ)}
    for ref in _refs(doc):
        _resolve(doc, ref)
    actions = {op["channel"]["$ref"].rsplit("/", 1)[1]: op["action"] for op in doc["operations"].values()}
    assert actions["ev_dynamics_v1"] == "receive" and actions["clean_ev_dynamics_v1"] == "send"


def _schema_with_components(doc: dict, schema: dict) -> dict:
    return {**schema, "components": doc["components"]}


def test_asyncapi_examples_validate_against_their_payload_and_header_schemas():
    doc = yaml.safe_load(RENDERED[ASYNCAPI_FILE])
    for name, message in doc["components"]["messages"].items():
        example = message["examples"][0]
        jsonschema.validate(example["payload"], _schema_with_components(doc, message["payload"]))
        jsonschema.validate(example["headers"], _schema_with_components(doc, message["headers"]))
    dlq = doc["components"]["messages"]["voltrisk_dlq_v1"]["examples"][0]["headers"]
    assert dlq["reason"] == "out_of_range" and EXAMPLE_VIN not in json.dumps(doc["components"]["messages"]
                                                                                 ["voltrisk_dlq_v1"])


def test_json_schema_agrees_with_the_gate_on_good_and_bad_values():
    """The published schema refuses what the gate refuses as schema/out_of_range."""
    validators = {t: jsonschema.Draft202012Validator(json.loads(RENDERED[f"schemas/{t}.json"])) for t in RAW_EXAMPLES}
    for topic, ex in RAW_EXAMPLES.items():
        assert validators[topic].is_valid(msgspec.to_builtins(ex.record))
    checked = 0
    for case in CASES:
        if case.reason in ("schema", "out_of_range") and case.topic in validators:
            doc = json.loads(case.messages[-1].value)
            assert not validators[case.topic].is_valid(doc), case.id
            checked += 1
    assert checked >= 20


runner = CliRunner()


def test_cli_export_writes_the_same_files(tmp_path):
    result = runner.invoke(app, ["export", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["written"]) == len(RENDERED)
    for rel, text in RENDERED.items():
        assert (tmp_path / rel).read_text(encoding="utf-8") == text


def _jsonl(path: Path, rows: list) -> Path:
    path.write_bytes(b"\n".join(r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows) + b"\n")
    return path


def _validate_dynamics(file: Path, headers: dict[str, str], exit_code: int) -> list[dict]:
    """`voltrisk contracts validate --json` of a dynamics file with the example VIN and
    ``headers`` as defaults: its output lines."""
    args = ["validate", "--topic", DYN, "--key", EXAMPLE_VIN, *sum((["--header", f"{k}={v}"] for k, v in headers.items()), []),
            str(file), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == exit_code, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_cli_validate_reports_each_line_and_a_summary(tmp_path):
    headers = {k: v.decode() for k, v in header_list(DYN)}
    rows = [
        {"key": EXAMPLE_VIN, "headers": headers, "value": value_dict(DYN, "v-1")},
        {"key": EXAMPLE_VIN, "headers": headers, "value": value_dict(DYN, "v-2", speed_kmh=300.0)},
        {"key": EXAMPLE_VIN, "headers": headers, "value": '{"event_id": "v-3", "speed_kmh": NaN}'},
        value_dict(DYN, "v-4"),  # plain value: key and headers from the options
        b"",  # blank lines are skipped but counted
        b"{not json",
        {"key": EXAMPLE_VIN, "headers": {**headers, "coord_sys": "BD09"}, "value": value_dict(DYN, "v-5")},
        value_dict(DYN, "v-1"),  # same event id as line 1: duplicate
    ]
    file = _jsonl(tmp_path / "dyn.jsonl", rows)
    lines = _validate_dynamics(file, headers, exit_code=1)
    assert [(d["line"], d["ok"], d["reason"]) for d in lines[:-1]] == [
        (1, True, None), (2, False, "out_of_range"), (3, False, "non_finite"), (4, True, None),
        (6, False, "malformed_json"), (7, False, "bad_header"), (8, False, "duplicate"),
    ]
    assert lines[1]["message"].startswith("line 2: speed_kmh must be <= 250.0 km/h")
    assert lines[-1] == {"summary": {"ok": 2, "rejected": 5}}


def test_cli_validate_judges_batch_messages_record_by_record_as_the_workers_do(tmp_path):
    """A line holding a JSON array is a batch message: one result per record, with its
    position, and the worker's own verdicts (a repeated id inside the batch, a record out
    of range); a batch over the record limit is refused whole."""
    headers = {k: v.decode() for k, v in header_list(DYN)}
    good = [value_dict(DYN, f"b-{i}") for i in range(3)]
    rows = [
        {"key": EXAMPLE_VIN, "headers": headers, "value": good},
        [value_dict(DYN, "b-3"), value_dict(DYN, "b-3"), value_dict(DYN, "b-4", speed_kmh=300.0)],
        [value_dict(DYN, "b-5")] * 1_001,
    ]
    file = _jsonl(tmp_path / "batches.jsonl", rows)
    lines = _validate_dynamics(file, headers, exit_code=1)
    assert [(d["line"], d.get("record"), d["ok"], d["reason"]) for d in lines[:-1]] == [
        (1, 0, True, None), (1, 1, True, None), (1, 2, True, None),
        (2, 0, True, None), (2, 1, False, "duplicate"), (2, 2, False, "out_of_range"),
        (3, None, False, "payload_too_large"),
    ]
    assert lines[4]["message"].startswith("line 2 record 1: event_id 'b-3' is repeated in this batch")
    assert lines[-1] == {"summary": {"ok": 4, "rejected": 3}}


def test_cli_validate_exit_0_when_all_lines_pass_and_2_on_unknown_topic(tmp_path):
    ex = RAW_EXAMPLES["ev.state.v1"]
    file = _jsonl(tmp_path / "state.jsonl", [{"key": ex.key, "headers": ex.headers, "value": msgspec.to_builtins(ex.record)}])
    ok = runner.invoke(app, ["validate", "--topic", "ev.state.v1", str(file)])
    assert ok.exit_code == 0 and "line 1: ok" in ok.stdout
    bad = runner.invoke(app, ["validate", "--topic", "ev.speed.v1", str(file)])
    assert bad.exit_code == 2 and "not a raw topic" in bad.output


def test_integration_guide_lists_every_reason():
    table = GUIDE.read_text(encoding="utf-8")
    missing = [code for code in REASONS if f"`{code}`" not in table]
    assert missing == []


def test_integration_guide_console_producer_lines_are_accepted_by_the_gate():
    """Each line of the guide's console-producer input, parsed the way Kafka's
    LineMessageReader does with the guide's properties, passes the gate."""
    guide = GUIDE.read_text(encoding="utf-8")
    block = re.search(r"<!-- console-producer-input -->\n```text\n(.*?)```", guide, re.S)
    assert block, "docs/integration.md lost its console-producer input block"
    from stream.gate import Accepted, Gate
    from voltrisk.settings import WorkerSettings

    gate = Gate(WorkerSettings())
    verdicts = []
    for line in block.group(1).splitlines():
        header_text, key, value = line.split("|", 2)  # headers.delimiter and key.separator
        headers = [tuple(h.split(":", 1)) for h in header_text.split(";")]  # headers.separator, headers.key.separator
        verdicts.append(gate.check(DYN, key.encode(), value.encode(), [(k, v.encode()) for k, v in headers], 0, 0))
    assert len(verdicts) == 3 and all(isinstance(v, Accepted) for v in verdicts), [getattr(v, "message", "") for v in verdicts]


def test_integration_guide_example_values_are_accepted_by_the_gate():
    from stream.gate import Accepted, Gate
    from voltrisk.settings import WorkerSettings

    guide = GUIDE.read_text(encoding="utf-8")
    blocks = dict(re.findall(r"<!-- example: (\S+) -->\n```json\n(.*?)```", guide, re.S))
    assert sorted(blocks) == sorted(RAW_EXAMPLES)
    gate = Gate(WorkerSettings())
    for topic, text in blocks.items():
        ex = RAW_EXAMPLES[topic]
        value = text.replace("\n", "").encode()
        verdict = gate.check(topic, ex.key.encode(), value, [(k, v.encode()) for k, v in ex.headers.items()], 0, 0)
        assert isinstance(verdict, Accepted), verdict.message
        assert msgspec.json.decode(value, type=type(ex.record)) == ex.record, f"{topic} example differs from contracts/examples.py"
