"""Versioned SQL migrations, applied idempotently and recorded.

Files ``warehouse/migrations/NNNN_name.sql`` run in order; each holds statements
separated by a ``;`` at the end of a line. ``{raw_position_ttl_days}`` is filled
from settings. Applied versions are recorded in ``schema_migrations`` with the
file's checksum; a changed checksum of an applied file is reported, not re-run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from voltrisk.settings import WarehouseSettings

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    def statements(self, settings: WarehouseSettings) -> list[str]:
        text = self.sql.replace("{raw_position_ttl_days}", str(settings.raw_position_ttl_days))
        text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
        return [s.strip() for s in re.split(r";\s*$", text, flags=re.M) if s.strip()]


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise ValueError(f"{path}: migration files are named NNNN_snake_case.sql")
        found.append(Migration(int(m.group(1)), m.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise ValueError(f"duplicate migration version in {directory}: {sorted(versions)}")
    return found


def migrate(client, settings: WarehouseSettings, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply pending migrations; return those applied now."""
    client.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, checksum String, "
        "applied_at DateTime DEFAULT now()) ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {row[0]: row[1] for row in client.query("SELECT version, checksum FROM schema_migrations FINAL").result_rows}
    applied = []
    for mig in discover(directory):
        if mig.version in done:
            continue
        for stmt in mig.statements(settings):
            client.command(stmt)
        client.insert("schema_migrations", [[mig.version, mig.name, mig.checksum]], column_names=["version", "name", "checksum"])
        applied.append(mig)
    return applied


def drift(client, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Applied migrations whose file changed since they ran."""
    done = {row[0]: row[1] for row in client.query("SELECT version, checksum FROM schema_migrations FINAL").result_rows}
    return [f"{m.version:04d}_{m.name}" for m in discover(directory) if m.version in done and done[m.version] != m.checksum]
