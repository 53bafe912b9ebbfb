"""``voltrisk contracts``: export the published contract, validate files offline."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Topic contracts: JSON Schema + AsyncAPI export, offline validation.", no_args_is_help=True)


@app.command()
def export(
    out: Path = typer.Option(Path("contracts"), "--out", help="Directory for schemas/*.json and asyncapi.yaml"),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object listing the files written"),
) -> None:
    """Write one JSON Schema per topic and asyncapi.yaml, generated from the record types.

    Example: voltrisk contracts export --out contracts/
    """
    from contracts.export import write

    written = write(out)
    if json_out:
        typer.echo(json.dumps({"written": [str(p) for p in written]}))
    else:
        for path in written:
            typer.echo(str(path))


def _parse_header_options(pairs: list[str]) -> dict[str, str]:
    headers = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"--header {pair!r} must look like name=value, e.g. coord_sys=GCJ02")
        headers[name] = value
    return headers


@app.command()
def validate(
    file: Path = typer.Argument(..., help="JSON-lines file, one message per line ('-' reads stdin)", allow_dash=True),
    topic: str = typer.Option(..., "--topic", help="Raw topic the lines would be produced to, e.g. ev.dynamics.v1"),
    header: list[str] = typer.Option([], "--header", help="Default header name=value for lines without headers"),
    key: Optional[str] = typer.Option(None, "--key", help="Default Kafka key (VIN or claim id) for lines without one"),
    purpose: str = typer.Option("pricing", "--purpose", help="Consuming purpose the consent scope must cover"),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per line, then a summary object"),
) -> None:
    """Run the workers' ingest gate over a JSON-lines file, offline.

    Each line is either an envelope {"key": VIN, "headers": {...}, "value": {...}}
    (value may also be a JSON string holding the raw message text) or a plain
    record, which takes --key and --header. Exit status 1 when any line is refused.

    Example: voltrisk contracts validate --topic ev.dynamics.v1 --key LDMTEST0000000001 --header schema_version=1 --header source_protocol=oem-json --header coord_sys=WGS84 --header consent_scope=pricing dynamics.jsonl --json
    """
    from contracts.validate import validate_lines
    from stream import topics
    from stream.gate import CONSENT_SCOPES

    if topic not in {t.name for t in topics.RAW}:
        raise typer.BadParameter(f"{topic} is not a raw topic; use one of {', '.join(t.name for t in topics.RAW)}",
                                 param_hint="--topic")
    if purpose not in CONSENT_SCOPES:
        raise typer.BadParameter(f"{purpose} is not one of {', '.join(CONSENT_SCOPES)}", param_hint="--purpose")
    defaults = _parse_header_options(header)
    stream = sys.stdin.buffer if str(file) == "-" else None
    if stream is None and not file.is_file():
        raise typer.BadParameter(f"{file} does not exist", param_hint="FILE")
    lines = stream if stream is not None else file.open("rb")
    ok = rejected = 0
    with lines:
        for result in validate_lines(lines, topic, key, defaults, purpose):
            ok += result["ok"]
            rejected += not result["ok"]
            if json_out:
                typer.echo(json.dumps(result, ensure_ascii=False))
            elif result["ok"]:
                typer.echo(f"line {result['line']}: ok")
            else:
                typer.echo(f"{result['message']} ({result['reason']})")
    if json_out:
        typer.echo(json.dumps({"summary": {"ok": ok, "rejected": rejected}}))
    else:
        typer.echo(f"{ok} accepted, {rejected} rejected", err=True)
    raise typer.Exit(1 if rejected else 0)
