"""The capacity model's arithmetic on a bench result (docs/scaling.md is generated from it)."""

import math

from voltrisk import capacity


def _result(eps=10_000, insert=250_000, bytes_per_row=10.0):
    return {"date_utc": "d", "commit": "c", "machine": "m", "warehouse_insert_rows_per_s": insert,
            "stages": [{"name": "full", "eps": eps, "cpu_s_per_record": 80e-6,
                        "note": "1 worker process + warehouse (40.0 µs CPU per record in the warehouse process)"}],
            "storage": {"telemetry_dynamics": {"compressed_bytes_per_row": bytes_per_row}}}


def test_fleet_rows_follow_the_measured_costs_and_the_assumptions():
    a = capacity.FleetAssumptions()
    cap = capacity.model(_result(), fleets=(100_000, 1_000_000), a=a)
    per_vehicle = 1.2 * 3600 + 1.2 * 3600 / 10 + (86_400 - 1.2 * 3600) / 300
    assert cap["records_per_vehicle_day"] == round(per_vehicle)
    small, big = cap["fleets"]
    peak = 1_000_000 * per_vehicle * 0.12 / 3600
    assert big["peak_records_per_s"] == round(peak)
    assert big["worker_processes"] == math.ceil(peak * 1.5 / 10_000)
    assert big["clickhouse_shards"] == math.ceil(peak * 1.5 / 250_000)
    assert big["storage_gb_per_day"] == round(1_000_000 * per_vehicle * 10.0 / 1e9, 1)
    assert big["kafka_partitions"] >= 2 * big["worker_processes"] and small["kafka_partitions"] >= 12
    assert cap["warehouse_cpu_us_per_record"] == 40.0 and "worker" in cap["saturates_first"]
    # a worker twice as fast halves the workers needed
    faster = capacity.model(_result(eps=20_000), fleets=(1_000_000,), a=a)["fleets"][0]
    assert faster["worker_processes"] == math.ceil(peak * 1.5 / 20_000)
    md = capacity.markdown(_result(), cap)
    assert "| 1,000,000 |" in md and "Saturates first" in md
