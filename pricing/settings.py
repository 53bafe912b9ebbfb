"""Settings of the pricing lab (env prefix ``VOLTRISK_``, like every voltrisk deployable)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# the shared data directory sits beside the repository: <repo>/../shared/data/freMTPL2
_REPO_ROOT = Path(__file__).resolve().parents[1]


class PricingSettings(BaseSettings):
    """Where pricing finds its reference data and keeps its model registry."""

    model_config = SettingsConfigDict(env_prefix="VOLTRISK_", extra="forbid", frozen=True, hide_input_in_errors=True)

    fremtpl2_dir: Path = Field(
        _REPO_ROOT.parent / "shared" / "data" / "freMTPL2",
        description="Directory holding freMTPL2freq.csv.gz, freMTPL2sev.csv and splits/",
    )
    model_registry_dir: Path = Field(Path(".voltrisk/models"), description="Root of the versioned model artefacts")
    pricing_nthread: int = Field(2, ge=1, description="Threads for XGBoost training and scoring")
