"""freMTPL2 (French motor third-party liability) loading, preprocessing and published splits.

Two published set-ups, both reproduced exactly from ``<data dir>/splits``:

- ``noll2018``: Noll–Salzmann–Wüthrich (2018/2020). ClaimNb capped at 4, Exposure capped
  at 1, the original 678,013 rows; 610,212 learn / 67,801 test.
- ``wm2023``: Wüthrich–Merz (2023, App. B). ClaimNb recomputed from freMTPL2sev, policies
  with more than 5 claims dropped, Exposure capped at 1; 610,206 learn / 67,801 test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from pricing.settings import PricingSettings

Split = Literal["noll2018", "wm2023"]
SPLIT_FILES: dict[str, str] = {
    "noll2018": "noll2018_split_seed100_R350.csv.gz",
    "wm2023": "wm2023_split_seed500_R350.csv.gz",
}
FREQ_FILE = "freMTPL2freq.csv.gz"
SEV_FILE = "freMTPL2sev.csv"


@dataclass(frozen=True)
class Portfolio:
    """One published learn/test partition of freMTPL2.

    ``policies`` has the freq columns (preprocessed) plus ``ClaimAmount`` (sum of the
    policy's claim amounts from freMTPL2sev, 0 without claims), ``ClaimNbSev`` (how many
    claim amounts freMTPL2sev holds for the policy) and ``set`` (learn/test).
    """

    split: str
    policies: pd.DataFrame

    @property
    def learn(self) -> pd.DataFrame:
        return self.policies[self.policies["set"] == "learn"]

    @property
    def test(self) -> pd.DataFrame:
        return self.policies[self.policies["set"] == "test"]


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: point VOLTRISK_FREMTPL2_DIR (or --data-dir) at the freMTPL2 directory "
            f"holding {FREQ_FILE}, {SEV_FILE} and splits/"
        )
    return path


def load_raw(data_dir: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The 678,013 policies and 26,639 claims exactly as published (no preprocessing)."""
    data_dir = Path(data_dir or PricingSettings().fremtpl2_dir)
    freq = pd.read_csv(_require(data_dir / FREQ_FILE))
    sev = pd.read_csv(_require(data_dir / SEV_FILE))
    return freq, sev


def load(split: Split = "noll2018", data_dir: Path | None = None) -> Portfolio:
    """Preprocess freMTPL2 as the publication behind ``split`` did and attach its partition.

    >>> p = load("noll2018")  # doctest: +SKIP
    >>> len(p.learn), len(p.test)  # doctest: +SKIP
    (610212, 67801)
    """
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown split {split!r}: choose one of {sorted(SPLIT_FILES)}")
    data_dir = Path(data_dir or PricingSettings().fremtpl2_dir)
    freq, sev = load_raw(data_dir)
    claims_per_policy = sev.groupby("IDpol")["ClaimAmount"].agg(["size", "sum"])
    if split == "noll2018":
        freq["ClaimNb"] = freq["ClaimNb"].clip(upper=4)
    else:
        freq["ClaimNb"] = freq["IDpol"].map(claims_per_policy["size"]).fillna(0).astype(np.int64)
        freq = freq[freq["ClaimNb"] <= 5].sort_values("IDpol", kind="stable").reset_index(drop=True)
    freq["Exposure"] = freq["Exposure"].clip(upper=1.0)
    freq["ClaimAmount"] = freq["IDpol"].map(claims_per_policy["sum"]).fillna(0.0)
    freq["ClaimNbSev"] = freq["IDpol"].map(claims_per_policy["size"]).fillna(0).astype(np.int64)

    assignment = pd.read_csv(_require(data_dir / "splits" / SPLIT_FILES[split]))
    if len(assignment) != len(freq) or not np.array_equal(assignment["IDpol"].to_numpy(), freq["IDpol"].to_numpy()):
        raise ValueError(
            f"{SPLIT_FILES[split]} lists {len(assignment)} policies that do not line up with the {len(freq)} "
            f"preprocessed policies of {data_dir / FREQ_FILE}: is this the original 678,013-row freMTPL2?"
        )
    freq["set"] = assignment["set"].to_numpy()
    return Portfolio(split=split, policies=freq)


def glm1_features(policies: pd.DataFrame) -> pd.DataFrame:
    """The GLM1 feature engineering of Noll–Salzmann–Wüthrich (2020, §3.2).

    Area as an ordinal integer (A=1 … F=6), VehPower capped at 9 and categorical,
    VehAge in classes {0}, [1, 10] (reference), [11, ∞), DrivAge in classes
    [18, 21), [21, 26), [26, 31), [31, 41), [41, 51) (reference), [51, 71), [71, ∞),
    BonusMalus capped at 150, log Density; VehBrand, VehGas and Region categorical
    (Region reference R24).

    >>> glm1_features(pd.DataFrame({"Area": ["C"], "VehPower": [12], "VehAge": [0], "DrivAge": [45],
    ...     "BonusMalus": [230], "Density": [np.e], "VehBrand": ["B1"], "VehGas": ["Diesel"], "Region": ["R24"]})).iloc[0].to_dict()
    {'AreaGLM': 3.0, 'VehPowerGLM': '9', 'VehAgeGLM': '0', 'DrivAgeGLM': '41-50', 'BonusMalusGLM': 150.0, 'DensityGLM': 1.0, 'VehBrand': 'B1', 'VehGas': 'Diesel', 'Region': 'R24'}
    """
    area_code = {letter: float(i + 1) for i, letter in enumerate("ABCDEF")}
    return pd.DataFrame(
        {
            "AreaGLM": policies["Area"].map(area_code).astype(float),
            "VehPowerGLM": _as_label(np.minimum(policies["VehPower"], 9)),
            "VehAgeGLM": _classes(policies["VehAge"], [0, 1, 11], ["0", "1-10", "11+"]),
            "DrivAgeGLM": _classes(
                policies["DrivAge"], [18, 21, 26, 31, 41, 51, 71], ["18-20", "21-25", "26-30", "31-40", "41-50", "51-70", "71+"]
            ),
            "BonusMalusGLM": np.minimum(policies["BonusMalus"], 150).astype(float),
            "DensityGLM": np.log(policies["Density"].astype(float)),
            "VehBrand": policies["VehBrand"].astype(object),
            "VehGas": policies["VehGas"].astype(object),
            "Region": policies["Region"].astype(object),
        },
        index=policies.index,
    )


GLM1_CATEGORICAL = ("VehPowerGLM", "VehAgeGLM", "DrivAgeGLM", "VehBrand", "VehGas", "Region")
GLM1_REFERENCE = {"VehAgeGLM": "1-10", "DrivAgeGLM": "41-50", "Region": "R24"}


def _as_label(values: pd.Series) -> pd.Series:
    return values.astype("Int64").astype(str).where(values.notna(), None).astype(object)


def _classes(values: pd.Series, lower_edges: list[int], labels: list[str]) -> pd.Series:
    """Label each value with the class whose lower edge is the largest one ≤ value (NaN stays missing)."""
    idx = np.searchsorted(np.asarray(lower_edges), values.to_numpy(dtype=float), side="right") - 1
    out = np.array(labels, dtype=object)[np.clip(idx, 0, len(labels) - 1)]
    out[~np.isfinite(values.to_numpy(dtype=float))] = None
    return pd.Series(out, index=values.index, dtype=object)


def xgb_features(policies: pd.DataFrame) -> pd.DataFrame:
    """Extra columns for the tree models: Area as ordinal, log Density, VehGas as 0/1.

    Trees need no binning: VehPower, VehAge, DrivAge and BonusMalus enter raw, and
    VehBrand and Region stay categorical (XGBoost native categories).
    """
    area_code = {letter: float(i + 1) for i, letter in enumerate("ABCDEF")}
    return pd.DataFrame(
        {
            "AreaCode": policies["Area"].map(area_code).astype(float),
            "LogDensity": np.log(policies["Density"].astype(float)),
            "VehGasRegular": (policies["VehGas"] == "Regular").astype(float).where(policies["VehGas"].notna()),
        },
        index=policies.index,
    )


def model_frame(policies: pd.DataFrame) -> pd.DataFrame:
    """The policies with the engineered columns of both GLM1 and the tree models beside the raw ones."""
    glm = glm1_features(policies).drop(columns=["VehBrand", "VehGas", "Region"])
    return pd.concat([policies, glm, xgb_features(policies)], axis=1)


GLM1_FEATURES = ("AreaGLM", "VehPowerGLM", "VehAgeGLM", "DrivAgeGLM", "BonusMalusGLM", "DensityGLM", "VehBrand", "VehGas", "Region")
XGB_FEATURES = ("AreaCode", "VehPower", "VehAge", "DrivAge", "BonusMalus", "LogDensity", "VehGasRegular", "VehBrand", "Region")
XGB_CATEGORICAL = ("VehBrand", "Region")
