"""``voltrisk``: one command line, verbs per context.

Every verb has ``--help`` with an example. Errors a user can fix print as one
sentence (no stack trace) and exit with status 2.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

import typer
from rich.console import Console

from contracts.cli import app as contracts_app
from dashboard.cli import app as dashboard_app
from fraudring.cli import app as fraud_app
from pricing.cli import app as pricing_app
from simulators.cli import app as simulate_app
from simulators.cli import load_app
from voltrisk import __version__
from voltrisk.errors import UserError, first_line
from voltrisk.security_cli import app as security_app

err = Console(stderr=True)

app = typer.Typer(
    help="voltrisk — telematics auto-insurance streaming platform for electric vehicles.\n\n"
    "Example: voltrisk up   (start the whole local platform and print the dashboard URL)",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
broker_app = typer.Typer(help="The local Apache Kafka broker (KRaft, single node).\n\nExample: voltrisk broker start", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics, created explicitly from stream/topics.py.\n\nExample: voltrisk topics create", no_args_is_help=True)
warehouse_app = typer.Typer(help="The warehouse: migrations, sink and read-only endpoint.\n\nExample: voltrisk warehouse migrate", no_args_is_help=True)
worker_app = typer.Typer(help="The Faust stream worker.\n\nExample: voltrisk worker run", no_args_is_help=True)
dlq_app = typer.Typer(help="The dead-letter topic: what was refused and why; records the features failed on sent back "
                            "to them.\n\nExample: voltrisk dlq summary", no_args_is_help=True)

app.add_typer(broker_app, name="broker")
app.add_typer(topics_app, name="topics")
app.add_typer(warehouse_app, name="warehouse")
app.add_typer(worker_app, name="worker")
app.add_typer(dlq_app, name="dlq")
app.add_typer(simulate_app, name="simulate")
app.add_typer(load_app, name="load")
app.add_typer(contracts_app, name="contracts")
app.add_typer(pricing_app, name="pricing")
app.add_typer(fraud_app, name="fraud")
app.add_typer(dashboard_app, name="dashboard")
app.add_typer(security_app, name="security")


def _logging(level: str = "INFO") -> None:
    from voltrisk.logfilter import quiet_repeats

    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    quiet_repeats()


@app.command()
def version() -> None:
    """Print the version.

    Example: voltrisk version
    """
    typer.echo(__version__)


# --- broker ---------------------------------------------------------------

@broker_app.command("fetch")
def broker_fetch() -> None:
    """Resolve the pinned Kafka broker jars into .voltrisk/kafka/lib (once).

    Example: voltrisk broker fetch
    """
    from voltrisk import broker
    from voltrisk.settings import BrokerSettings

    err.print(f"Kafka jars in {broker.fetch(BrokerSettings(), quiet=False)}")


@broker_app.command("start")
def broker_start() -> None:
    """Start the broker (fetch jars and format storage on first use) and wait until it answers.

    Example: voltrisk broker start
    """
    from voltrisk import broker
    from voltrisk.settings import BrokerSettings

    s = BrokerSettings()
    pid, started = broker.start(s)
    st = broker.status(s)
    err.print(f"Kafka broker {'started' if started else 'already running'} (pid {pid}) at {st['bootstrap']}; logs: {st['log']}")


@broker_app.command("stop")
def broker_stop() -> None:
    """Stop the broker this checkout started.

    Example: voltrisk broker stop
    """
    from voltrisk import broker
    from voltrisk.settings import BrokerSettings

    err.print("Kafka broker stopped" if broker.stop(BrokerSettings()) else "Kafka broker was not running")


@broker_app.command("status")
def broker_status(as_json: bool = typer.Option(False, "--json", help="Print one JSON object")) -> None:
    """Say whether the broker runs and answers.

    Example: voltrisk broker status --json
    """
    from voltrisk import broker
    from voltrisk.settings import BrokerSettings

    st = broker.status(BrokerSettings())
    if as_json:
        typer.echo(json.dumps(st))
    else:
        err.print(f"pid {st['pid']}, {st['bootstrap']} {'answers' if st['answers'] else 'does not answer'}; logs: {st['log']}")
    raise typer.Exit(0 if st["answers"] else 1)


# --- topics ---------------------------------------------------------------

@topics_app.command("create")
def topics_create() -> None:
    """Create every topic of stream/topics.py that does not exist (partitions and replication from settings).

    Example: VOLTRISK_TELEMETRY_PARTITIONS=24 voltrisk topics create
    """
    from voltrisk.broker import create_topics
    from voltrisk.security import admin_settings

    created = asyncio.run(create_topics(admin_settings()))
    err.print(f"created {len(created)} topics" + (f": {', '.join(created)}" if created else " (all existed)"))


@topics_app.command("list")
def topics_list() -> None:
    """List the platform's topics with their record types and keys.

    Example: voltrisk topics list
    """
    from stream import topics as T

    for t in T.ALL:
        typer.echo(f"{t.name:24} {t.kind:9} key={t.key:28} {t.record.__name__ if t.record else '-':12} {t.doc}")


# --- warehouse ------------------------------------------------------------

@warehouse_app.command("migrate")
def warehouse_migrate() -> None:
    """Apply pending SQL migrations (recorded in schema_migrations).

    Example: VOLTRISK_CLICKHOUSE_DSN=http://default:pw@ch:8123 voltrisk warehouse migrate
    """
    from voltrisk.settings import WarehouseSettings
    from warehouse.client import writer_client
    from warehouse.migrate import drift, migrate

    s = WarehouseSettings()
    client = writer_client(s)
    applied = migrate(client, s)
    err.print(f"applied {len(applied)} migrations" + (": " + ", ".join(f"{m.version:04d}_{m.name}" for m in applied) if applied else ""))
    changed = drift(client)
    if changed:
        err.print(f"[yellow]applied migrations changed since they ran: {', '.join(changed)} — add a new migration instead[/]")


@warehouse_app.command("serve")
def warehouse_serve(no_sink: bool = typer.Option(False, "--no-sink", help="Serve the endpoint only, do not consume Kafka")) -> None:
    """Own the warehouse: migrate, run the Kafka sink and serve the read-only HTTP endpoint.

    Example: voltrisk warehouse serve
    """
    from voltrisk.settings import KafkaClientSettings, WarehouseSettings
    from warehouse.service import serve

    _logging()
    asyncio.run(serve(WarehouseSettings(), KafkaClientSettings(), with_sink=not no_sink))


@warehouse_app.command("query")
def warehouse_query(sql: str, url: str = typer.Option("http://127.0.0.1:8124", help="ClickHouse HTTP URL")) -> None:
    """Run a read query through the read-only endpoint (or a server) and print the rows.

    Example: voltrisk warehouse query "SELECT count() FROM telemetry_dynamics"
    """
    from warehouse.client import http_client

    res = http_client(url).query(sql)
    for row in res.result_rows:
        typer.echo("\t".join(str(v) for v in row))


# --- worker ---------------------------------------------------------------

@worker_app.command("run")
def worker_run(loglevel: str = typer.Option("info", help="crit|error|warn|info|debug")) -> None:
    """Run the Faust stream worker (ingest gate, features, scoring) in the foreground.

    Example: voltrisk worker run
    """
    from stream.worker import main

    main(loglevel)


# --- dead letters -----------------------------------------------------------

@dlq_app.command("summary")
def dlq_summary(url: str = typer.Option("http://127.0.0.1:8124", help="ClickHouse HTTP URL"),
                as_json: bool = typer.Option(False, "--json", help="Print one JSON object per line")) -> None:
    """Dead letters stored in the warehouse, per source topic and reason, with the latest message.

    Example: voltrisk dlq summary
    """
    from stream.deadletters import summary
    from warehouse.client import http_client

    try:
        rows = summary(http_client(url))
    except Exception as exc:
        raise UserError(f"the warehouse at {url} did not answer ({first_line(exc)}); start it with `make up`") from None
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r, default=str))
        return
    if not rows:
        err.print("no dead letters")
    for r in rows:
        typer.echo(f"{r['messages']:>8}  {r['source_topic']:24} {r['reason']:22} latest {r['latest']}  {r['latest_message'][:160]}")


@dlq_app.command("redrive")
def dlq_redrive(
    reason: str = typer.Option("features_error", help="The dead letters of this reason"),
    vehicle: str = typer.Option(None, help="Only this pseudonymous vehicle id"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be sent, send nothing"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object"),
) -> None:
    """Send the clean records the features failed on (reason features_error) back to them, once the
    defect is fixed and the workers run the fix. The gate's refusals cannot be sent back: the
    carmaker sends those records anew.

    Example: voltrisk dlq redrive --dry-run
    """
    from stream.deadletters import redrive
    from voltrisk.settings import KafkaClientSettings

    k = KafkaClientSettings()

    def progress(r) -> None:
        if not as_json:
            err.print(f"read {r.read:,} dead letters, {r.sent:,} to send ({r.records:,} records of {r.vehicles:,} vehicles)")

    try:
        out = asyncio.run(redrive(k, reason=reason, vehicle=vehicle, dry_run=dry_run, progress=progress))
    except LookupError as exc:
        raise UserError(str(exc).strip("'\"")) from None
    except Exception as exc:
        if not isinstance(exc, (OSError, TimeoutError)) and not type(exc).__module__.startswith("aiokafka"):
            raise
        raise UserError(f"Kafka at {k.kafka_bootstrap} did not answer ({first_line(exc)}); start it with `make up`") from None
    if as_json:
        typer.echo(json.dumps(out.as_dict()))
        return
    verb = "would send" if dry_run else "sent"
    err.print(f"{verb} {out.sent:,} dead letters ({out.records:,} records of {out.vehicles:,} vehicles) of reason "
              f"{reason} to features.redrive.v1; read {out.read:,}, matched {out.matched:,}")
    for topic, n in out.not_redrivable.items():
        err.print(f"[yellow]{n:,} of reason {reason} came from {topic}: the gate's refusals cannot be sent back; "
                  f"the carmaker sends those records anew[/]")


# --- local platform -------------------------------------------------------

@app.command()
def up(simulate: bool = typer.Option(True, help="Also start the fleet simulator in real time")) -> None:
    """Start the local platform: broker, topics, warehouse (+ sink), worker, simulator, dashboard.

    Example: voltrisk up
    """
    from voltrisk import local

    url = local.up(simulate=simulate, say=err.print)
    typer.echo(f"voltrisk is up: dashboard at {url}")


@app.command()
def down() -> None:
    """Stop exactly the processes `voltrisk up` started.

    Example: voltrisk down
    """
    from voltrisk import local

    local.down(say=err.print)


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Print one JSON object")) -> None:
    """Show which local services run, and which their supervisor restarted after a failure.

    Example: voltrisk status
    """
    from voltrisk import local

    st, restarted = local.status(), local.restarts()
    if as_json:
        typer.echo(json.dumps({**st, "restarts": restarted}))
    else:
        for name, pid in st.items():
            line = f"{name:10} {'pid ' + str(pid) if pid else 'stopped'}"
            if pid and name in restarted:
                r = restarted[name]
                last = r.get("last_exit") or {}
                line += (f" (restarted {r['restarts']}×; last exit code {last.get('code')} at {last.get('at')} "
                         f"after {last.get('after_s')} s; see its log)")
            err.print(line)


@app.command()
def bench(
    quick: bool = typer.Option(False, "--quick", help="Fewer records and shorter live runs (under 5 minutes)"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout"),
    append: bool = typer.Option(False, "--append", help="Append the Markdown table to bench/RESULTS.md"),
    records: int = typer.Option(0, help="Pre-filled records (default 400,000; 120,000 with --quick)"),
    live_rates: str = typer.Option("", help="Comma-separated live rates in records/s (default 1000,5000,10000,20000)"),
    two_workers: bool = typer.Option(True, help="Also run the full path with two worker processes"),
    batch: int = typer.Option(10, min=1, max=1000, help="Records per message (one vehicle's samples)"),
    scorer: str = typer.Option("xgboost", help="xgboost (a telematics model from a temp registry) or reference"),
) -> None:
    """Benchmark every stage against raw aiokafka on a temp broker and warehouse, in one run.

    Example: voltrisk bench --quick --json
    """
    import json

    from voltrisk.benchmark import BenchConfig, markdown, run

    if scorer not in ("xgboost", "reference"):
        raise typer.BadParameter("choose xgboost or reference", param_hint="--scorer")
    cfg = BenchConfig.quick_config() if quick else BenchConfig()
    cfg.scorer, cfg.two_workers, cfg.batch = scorer, two_workers, batch
    if records:
        cfg.records = records
    if live_rates:
        try:
            cfg.live_rates = tuple(int(r) for r in live_rates.split(",") if r.strip())
        except ValueError:
            raise typer.BadParameter(f"{live_rates!r} is not a comma-separated list of integers", param_hint="--live-rates")
    result = run(cfg, say=err.print)
    table = markdown(result)
    if append:
        from voltrisk.harness import REPO

        with open(REPO / "bench" / "RESULTS.md", "a") as f:
            f.write(f"\n\n## voltrisk bench ({result['date_utc']})\n\n{table}\n")
        from voltrisk import capacity

        cap = capacity.model(result)
        result["capacity"] = cap
        doc = REPO / "docs" / "scaling.md"
        text = doc.read_text()
        begin, end = "<!-- capacity:begin -->", "<!-- capacity:end -->"
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            doc.write_text(f"{head}{begin}\n{capacity.markdown(result, cap)}\n{end}{rest.split(end, 1)[1]}")
    typer.echo(json.dumps(result) if as_json else table)


@app.command()
def chaos(
    quick: bool = typer.Option(False, "--quick", help="Every scenario briefly (under 10 minutes in all)"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout"),
    scenario: list[str] = typer.Option([], "--scenario", help="Run only this scenario (repeatable); default all"),
    rate: float = typer.Option(1_000.0, min=50.0, help="Load generator events/s during every scenario"),
    doc: bool = typer.Option(True, help="Write the results to docs/reliability.md"),
) -> None:
    """Inject faults into a real temp broker, warehouse and worker while the load generator
    produces; reconcile each scenario (lost and duplicates must be 0). Exit status 1 if not.

    Scenarios: worker_sigkill, sink_sigkill, broker_restart, warehouse_unavailable, poison_pill,
    duplicate_storm, out_of_order_late, slow_consumer, disk_full, catch_up, worker_churn.

    Example: voltrisk chaos --quick --json
    """
    import signal

    from voltrisk import chaos as C

    def interrupted(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)  # clean up what the runner started on `kill` too
    cfg = C.ChaosConfig(quick=quick, rate=rate, scenarios=tuple(scenario) or C.SCENARIOS)
    try:
        result = C.run(cfg, say=err.print)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scenario")
    command = "voltrisk chaos" + (" --quick" if quick else "") + "".join(f" --scenario {s}" for s in scenario) + \
        (f" --rate {rate:g}" if rate != 1_000.0 else "")
    table = C.markdown(result, command)
    if doc:
        from voltrisk.harness import REPO

        C.write_doc(REPO / "docs" / "reliability.md", result, command, partial=list(scenario) or None)
    if as_json:
        keys = C.RESULT_KEYS + ("skipped", "error")

        def entry(s: dict) -> dict:
            out = {k: s[k] for k in keys if k in s}
            if "drain_x_realtime" in s.get("details", {}):  # catch-up: drain speed in multiples of real time
                out["catch_up_x"] = s["details"]["drain_x_realtime"]
            if s.get("details"):  # what the reconciliation counted (as in the doc's "Details")
                out["details"] = s["details"]
            return out

        typer.echo(json.dumps({"scenarios": [entry(s) for s in result["scenarios"]]}))
    else:
        typer.echo(table)
    raise typer.Exit(0 if C.ok(result) else 1)


def main() -> None:
    from voltrisk import kafkaclient

    kafkaclient.install()
    try:
        app()
    except UserError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
