"""``voltrisk simulate`` (event-level fleet + claims, and ``simulate book``) and
``voltrisk load`` (the load generator). Heavy imports stay inside the commands."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from voltrisk.errors import UserError

err = Console(stderr=True)
SHANGHAI = timezone(timedelta(hours=8))

app = typer.Typer(
    help="Simulate the EV fleet and the claims system (with fraud rings and ground truth).\n\n"
    "Example: voltrisk simulate --vehicles 200 --days 7 --seed 7",
    pretty_exceptions_enable=False,
)
load_app = typer.Typer(
    help="Load generator: hold a target event rate into Kafka and report what was achieved.\n\n"
    "Example: voltrisk load --rate 20000 --duration 60 --vehicles 2000 --json",
    pretty_exceptions_enable=False,
)


def _start_ms(start: str | None, days: int, realtime: bool) -> int:
    from simulators.runner import local_midnight_ms

    if start:
        try:
            day = datetime.fromisoformat(start)
        except ValueError:
            raise UserError(f"--start {start!r} is not a date; use YYYY-MM-DD (Shanghai local midnight)") from None
        return int(day.replace(tzinfo=day.tzinfo or SHANGHAI).timestamp() * 1000)
    today = local_midnight_ms(int(time.time() * 1000))
    return today if realtime else today - days * 86_400_000


def _summary_table(title: str, rows: dict) -> Table:
    t = Table(title=title)
    t.add_column("what")
    t.add_column("count", justify="right")
    for k, v in rows.items():
        t.add_row(k, f"{v:,}" if isinstance(v, int) else str(v))
    return t


@app.callback(invoke_without_command=True)
def simulate(
    ctx: typer.Context,
    vehicles: int = typer.Option(200, min=1, help="Vehicles (each with one driver and policy)"),
    days: int = typer.Option(7, min=1, help="Simulated days"),
    seed: int = typer.Option(7, help="Seed: same seed and options give byte-identical output"),
    realtime: bool = typer.Option(False, "--realtime/--fast", help="Wall-clock pace, or as fast as possible"),
    out: Path | None = typer.Option(None, help="Write JSON lines to this file instead of Kafka"),
    start: str | None = typer.Option(
        None,
        help="First simulated day, YYYY-MM-DD Shanghai (default: so the run ends today; "
        "today when --realtime). Fix it for byte-identical reruns",
    ),
    send_from_ms: int | None = typer.Option(
        None, help="Simulate from --start but send only events from this time on (Unix ms): a restarted "
        "simulator continues its fleet without re-sending what an earlier run sent"),
    hz: int = typer.Option(1, min=1, max=10, help="ev.dynamics.v1 rate while driving"),
    state_period_s: int = typer.Option(15, min=10, max=30, help="ev.state.v1 period while driving"),
    coord_sys: str | None = typer.Option(None, help="WGS84 or GCJ02 (default from VOLTRISK_SIM_COORD_SYS)"),
    rings: int = typer.Option(3, min=0, help="Organised fraud rings"),
    ring_min: int = typer.Option(4, min=3, help="Smallest ring (members)"),
    ring_max: int = typer.Option(8, min=3, help="Largest ring (members)"),
    ring_days: int | None = typer.Option(
        None, min=1, help="Ring claims fall in the first N simulated days (default: any day); `make up` puts them in "
                          "the two days of history it sends at once, so its rings are there to investigate at once"),
    crash_scale: float = typer.Option(1.0, min=0.0, help="Multiply the true crash rate (demos with few vehicle-days)"),
    truth: Path | None = typer.Option(None, help="Ground-truth directory (default .voltrisk/sim/truth-<seed>)"),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout"),
) -> None:
    """Simulate a fleet of EVs and the claims system into Kafka (or a file).

    Example: voltrisk simulate --vehicles 200 --days 7 --seed 7 --out /tmp/fleet.jsonl
    """
    if ctx.invoked_subcommand is not None:
        return
    from simulators import drivers, fleet, runner, scenario, sink
    from voltrisk.settings import SimulatorSettings

    settings = SimulatorSettings()
    coord = (coord_sys or settings.sim_coord_sys).upper()
    if ring_min > ring_max:
        raise UserError(f"--ring-min {ring_min} is larger than --ring-max {ring_max}")
    try:
        fcfg = fleet.FleetConfig(
            start_ms=_start_ms(start, days, realtime),
            days=days,
            dynamics_hz=hz,
            state_period_s=state_period_s,
            coord_sys=coord,
            crash_scale=crash_scale,
        )
        pop = drivers.build_population(vehicles, seed)
    except (ValueError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    scen = scenario.Scenario(pop, fcfg, scenario.ClaimsConfig(rings=rings, ring_size=(ring_min, ring_max),
                                                                  ring_days=ring_days))
    target = sink.FileSink(out, coord) if out else sink.KafkaSink(coord)
    truth_dir = truth or settings.home / "sim" / f"truth-{seed}"

    async def go():
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        async with target:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[events]:,} events"),
                TimeElapsedColumn(),
                console=err,
                disable=as_json and not err.is_terminal,
            ) as prog:
                task = prog.add_task("simulating", total=days * 86_400_000, events=0)

                def progress(n: int, ts_ms: int) -> None:
                    prog.update(
                        task,
                        completed=ts_ms - fcfg.start_ms,
                        events=prog.tasks[task].fields["events"] + n,
                        description=f"simulated {datetime.fromtimestamp(ts_ms / 1000, SHANGHAI):%Y-%m-%d %H:%M}",
                    )

                return await runner.pump(scen.events(), target, realtime, progress, send_from_ms)

    t0 = time.perf_counter()
    try:
        counts = asyncio.run(go())
    except KeyboardInterrupt:
        err.print("interrupted; ground truth so far is written")
        counts = scen.truth.counts
    elapsed = time.perf_counter() - t0
    scen.truth.write(truth_dir, pop)
    fraud = [c for c in scen.truth.claims if c["is_fraud"]]
    summary = {
        "vehicles": vehicles,
        "days": days,
        "seed": seed,
        "events": sum(counts.values()),
        "events_by_topic": dict(sorted(counts.items())),
        "crashes": len(scen.truth.crashes),
        "claims": len(scen.truth.claims),
        "fraud_claims": len(fraud),
        "rings": len(scen.truth.rings),
        "ring_claims": sum(1 for c in fraud if c["ring_id"]),
        "errors": target.errors,
        "elapsed_s": round(elapsed, 1),
        "events_per_s": round(sum(counts.values()) / max(elapsed, 1e-9), 1),
        "output": str(out) if out else "kafka",
        "truth_dir": str(truth_dir),
    }
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        rows = {
            **{f"events {k}": v for k, v in summary["events_by_topic"].items()},
            **{
                k: summary[k]
                for k in (
                    "crashes",
                    "claims",
                    "fraud_claims",
                    "rings",
                    "ring_claims",
                    "errors",
                    "elapsed_s",
                    "events_per_s",
                    "truth_dir",
                )
            },
        }
        err.print(
            _summary_table(f"simulate: {vehicles} vehicles x {days} days, seed {seed} -> {summary['output']}", rows)
        )
    if target.errors:
        raise typer.Exit(1)


@app.command("book")
def book(
    vehicle_years: float = typer.Option(50_000.0, min=1.0, help="Exposure of the vehicle book"),
    seed: int = typer.Option(7),
    out: Path = typer.Option(Path(".voltrisk/sim/book"), help="Output directory"),
    periods: int = typer.Option(12, min=1, help="30-day periods per vehicle"),
    claims: int = typer.Option(30_000, min=0, help="Target size of the claims book"),
    rings: int | None = typer.Option(None, min=0, help="Fraud rings (default one per 1,500 claims)"),
    fmt: str = typer.Option("parquet", "--format", help="parquet or csv"),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as one JSON object on stdout"),
) -> None:
    """Write the training book: vehicle-period features with exposure and true crash
    counts, and a claims book with fraud rings and verification facts.

    Example: voltrisk simulate book --vehicle-years 50000 --seed 7 --out /tmp/book
    """
    from simulators import book as bk

    t0 = time.perf_counter()
    with err.status(f"writing a {vehicle_years:,.0f} vehicle-year book to {out}"):
        try:
            manifest = bk.write_book(
                out,
                bk.BookConfig(vehicle_years=vehicle_years, seed=seed, periods=periods, claims=claims, rings=rings),
                fmt=fmt,
            )
        except (ValueError, FileNotFoundError) as exc:
            raise UserError(str(exc)) from None
    manifest["elapsed_s"] = round(time.perf_counter() - t0, 1)
    if as_json:
        sys.stdout.write(json.dumps(manifest) + "\n")
    else:
        err.print(_summary_table(f"book -> {out}", {k: v for k, v in manifest.items() if k != "files"}))


@app.command("truth-load")
def truth_load(
    truth: Path = typer.Option(..., help="Truth directory of a run (simulate --truth) or a book's DIR/truth"),
    run_id: str = typer.Option(..., help="Name for this run in the truth tables, e.g. sim-7 or book-7"),
    as_json: bool = typer.Option(False, "--json", help="Print row counts as one JSON object on stdout"),
) -> None:
    """Load a run's ground truth into the warehouse tables ring_truth, claim_truth and
    driver_truth (vehicle ids pseudonymised like the gate does). Needs the warehouse
    store to itself: stop `voltrisk warehouse serve` first, or use a server DSN.

    Example: voltrisk simulate truth-load --truth .voltrisk/sim/truth-7 --run-id sim-7
    """
    from simulators import truth_store
    from stream.pseudonym import Pseudonymiser
    from voltrisk.settings import WarehouseSettings, WorkerSettings
    from warehouse.client import writer_client
    from warehouse.migrate import migrate

    if not (truth / "rings.jsonl").exists() or not (truth / "claims_truth.csv").exists():
        raise UserError(
            f"{truth} holds no rings.jsonl/claims_truth.csv; pass the --truth directory of a simulate run "
            "or the truth/ directory of a book"
        )
    w = WorkerSettings()
    pseudo = Pseudonymiser(w.pseudonym_key.get_secret_value().encode(), w.pseudonym_key_version)
    rows = truth_store.truth_rows(truth, run_id, pseudo.vehicle_id)
    settings = WarehouseSettings()
    client = writer_client(settings)
    migrate(client, settings)
    truth_store.load(client, rows)
    counts = {
        t: int(
            client.query(
                f"SELECT count() FROM {t} FINAL WHERE run_id = {{r:String}}", parameters={"r": run_id}
            ).result_rows[0][0]
        )
        for t in truth_store.COLUMNS
    }
    if as_json:
        sys.stdout.write(json.dumps({"run_id": run_id, **counts}) + "\n")
    else:
        err.print(_summary_table(f"truth {run_id} -> warehouse", counts))


@load_app.callback(invoke_without_command=True)
def load(
    rate: float = typer.Option(20_000.0, min=1.0, help="Target events per second"),
    duration: float = typer.Option(60.0, min=1.0, help="Seconds to hold the rate"),
    vehicles: int = typer.Option(2_000, min=1, help="Vehicles driving at once (dynamics Hz = rate / vehicles, 1-10)"),
    seed: int = typer.Option(7),
    out: Path | None = typer.Option(
        None, help="Write JSON lines to this file instead of Kafka (measures the generator alone)"
    ),
    result: Path | None = typer.Option(None, help="Also write the JSON result to this file"),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object on stdout"),
) -> None:
    """Hold a target event rate into Kafka; each record carries a sent_ts_ms header so
    downstream stages can measure end-to-end latency.

    Example: voltrisk load --rate 20000 --duration 60 --vehicles 2000 --json
    """
    from dataclasses import asdict

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from simulators import runner, sink
    from voltrisk.settings import SimulatorSettings

    coord = SimulatorSettings().sim_coord_sys
    try:
        stream, hz = runner.load_stream(vehicles, rate, seed, int(time.time() * 1000))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    target = sink.FileSink(out, coord) if out else sink.KafkaSink(coord, stamp=True)

    async def go():
        async with target:
            with Progress(
                TextColumn("load"),
                BarColumn(),
                TextColumn("{task.fields[sent]:,} events"),
                TimeElapsedColumn(),
                console=err,
            ) as prog:
                task = prog.add_task("load", total=duration, sent=0)
                t0 = time.perf_counter()

                def progress(n: int) -> None:
                    prog.update(task, completed=time.perf_counter() - t0, sent=prog.tasks[task].fields["sent"] + n)

                return await runner.run_load(target, stream, rate, duration, vehicles, hz, progress)

    res = asdict(asyncio.run(go()))
    text = json.dumps(res)
    if result:
        result.parent.mkdir(parents=True, exist_ok=True)
        result.write_text(text + "\n")
    if as_json:
        sys.stdout.write(text + "\n")
    else:
        verdict = "held" if res["held_within_2pct"] else "NOT held"
        err.print(
            f"target {rate:,.0f}/s, achieved {res['achieved_rate']:,.0f}/s over {res['duration_s']} s: {verdict} "
            f"within 2 %; {res['events_sent']:,} events, {res['errors']} errors"
        )
    if not res["held_within_2pct"]:
        raise typer.Exit(1)
