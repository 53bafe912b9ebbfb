"""`voltrisk security`: certificates, SCRAM users and ACLs of the local SASL_SSL broker."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console

app = typer.Typer(
    help="SASL/SCRAM over TLS for the local broker (docs/security.md).\n\n"
    "Example: voltrisk security init && VOLTRISK_BROKER_SECURITY=sasl_ssl voltrisk up",
    no_args_is_help=True,
)
err = Console(stderr=True)


@app.command("init")
def init(force: bool = typer.Option(False, "--force", help="Replace existing certificates and passwords"),
         days: int = typer.Option(825, min=1, help="Validity of the certificates")) -> None:
    """Create a self-signed CA, the broker's certificate for 127.0.0.1/localhost and a SCRAM password per principal.

    Example: voltrisk security init
    """
    from voltrisk import security
    from voltrisk.settings import BrokerSettings

    m = security.init(BrokerSettings().home, days=days, force=force)
    err.print(f"CA {m.ca_cert}, broker keystore {m.broker_keystore}, SCRAM passwords of "
              f"{', '.join(security.PRINCIPALS)} in {m.credentials} (mode 0600)")


@app.command("acls")
def acls(apply: bool = typer.Option(True, help="Create the bindings on the broker (--no-apply: only list them)")) -> None:
    """Give each voltrisk principal the ACLs it needs on the broker (as the admin principal).

    Example: VOLTRISK_BROKER_SECURITY=sasl_ssl voltrisk security acls
    """
    from voltrisk import security
    from voltrisk.settings import WarehouseSettings, WorkerSettings

    wanted = security.grants(WorkerSettings().worker_app_id, WarehouseSettings().sink_group)
    for g in wanted:
        typer.echo(str(g))
    if apply:
        n = asyncio.run(security.apply_acls(security.admin_settings(), wanted))
        err.print(f"{n} ACL bindings in place")


@app.command("env")
def env(principal: str = typer.Argument(..., help="admin, worker, sink, simulator or dashboard")) -> None:
    """Print the VOLTRISK_KAFKA_* lines that make a process log in as PRINCIPAL (includes its password).

    Example: eval "$(voltrisk security env simulator)" && voltrisk simulate --vehicles 5 --days 1
    """
    import shlex

    from voltrisk import security
    from voltrisk.settings import BrokerSettings

    for k, v in security.client_env(BrokerSettings().home, principal).items():
        typer.echo(f"export {k}={shlex.quote(v)}")
