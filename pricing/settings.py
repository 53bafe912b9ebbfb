"""Settings of the pricing lab (env prefix ``VOLTRISK_``, like every voltrisk deployable)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from voltrisk.settings import FREMTPL2_DEFAULT_DIR


class PricingSettings(BaseSettings):
    """Where pricing finds its reference data and keeps its model registry."""

    model_config = SettingsConfigDict(env_prefix="VOLTRISK_", extra="forbid", frozen=True, hide_input_in_errors=True)

    fremtpl2_dir: Path = Field(
        FREMTPL2_DEFAULT_DIR,
        description="Directory holding freMTPL2freq.csv.gz, freMTPL2sev.csv and splits/",
    )
    model_registry_dir: Path = Field(Path(".voltrisk/models"), description="Root of the versioned model artefacts")
    pricing_nthread: int = Field(2, ge=1, description="Threads for XGBoost training and scoring")
