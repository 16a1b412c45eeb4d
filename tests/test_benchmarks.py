"""The benchmark harness and the scaling model, without any timing threshold:
the commands run and write what the report needs, and the simulation keeps
the invariants that follow from its own rules."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import run_command

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import simulate as sim  # noqa: E402

# A model with a cheap compute and a costly master step, so saturation comes early.
BASE = sim.Params(
    compute_s=0.02,
    params=1_000_000,
    apply_s=1e-3,
    copy_s=2e-4,
    bandwidth=10e9,
    latency=5e-6,
    master_fixed_s=1e-4,
    worker_fixed_s=2e-4,
    allreduce_fixed_s=1e-4,
    jitter=0.0,
)


def _bench(*args: str, timeout: float = 120) -> None:
    result = run_command([sys.executable, "-m", "benchmarks", *args], timeout=timeout, cwd=ROOT)
    assert result.returncode == 0, result.output


def test_simulate_quick_writes_the_expected_json(tmp_path: Path) -> None:
    out = tmp_path / "simulate.json"
    _bench("simulate", "--quick", "--compute-ms", "50", "--params", "1e6", "--out", str(out))
    result = json.loads(out.read_text())
    for key in (
        "benchmark",
        "command",
        "date",
        "machine",
        "load_before",
        "rows",
        "summary",
        "inputs",
        "predictions",
        "saturation",
    ):
        assert key in result, key
    assert result["benchmark"] == "simulate" and result["quick"] is True
    assert result["inputs"] and all(name.startswith("given") for name in result["inputs"])
    algos = {p["algo"] for p in result["predictions"]}
    assert {"downpour", "sync", "easgd", "allreduce"} <= algos
    for p in result["predictions"]:
        assert p["samples_per_s"] > 0 and 0 < p["efficiency"] <= 1.2
    assert all(groups["downpour"]["analytic"] > 0 for groups in result["saturation"].values())


@pytest.mark.parametrize("workers", [1, 2, 8, 32, 128])
def test_sync_never_beats_independent_workers(workers: int) -> None:
    single = sim.single_worker_rate(BASE)
    got = sim.simulate(BASE, "sync", workers, cycles=10)["samples_per_s"]
    assert got <= workers * single * (1 + 1e-9)


@pytest.mark.parametrize("algo", ["downpour", "easgd", "allreduce"])
def test_no_algorithm_beats_independent_workers(algo: str) -> None:
    single = sim.single_worker_rate(BASE)
    for workers in (1, 4, 16):
        assert sim.simulate(BASE, algo, workers, cycles=10)["samples_per_s"] <= workers * single * (1 + 1e-9)


def test_allreduce_time_grows_with_bytes_and_peers() -> None:
    times = [sim.ring_allreduce_s(n, 8, 10e9, 5e-6) for n in (1e3, 1e5, 1e7, 1e9)]
    assert times == sorted(times) and times[0] < times[-1]
    assert sim.ring_allreduce_s(4e6, 1, 10e9, 5e-6) == 0.0
    assert sim.ring_allreduce_s(4e6, 2, 10e9, 5e-6) < sim.ring_allreduce_s(4e6, 64, 10e9, 5e-6)


def test_bucketed_allreduce_hides_behind_backward_all_but_its_last_bucket() -> None:
    from dataclasses import replace

    from benchmarks.simulate.model import allreduce_s, exposed_allreduce_s

    big = replace(BASE, params=10_000_000, bucket_mb=4e6 / 2**20)  # 10 buckets of 4 MB
    whole = allreduce_s(big, 64)
    assert exposed_allreduce_s(replace(big, bucket_mb=0), 64) == whole  # no buckets: nothing hidden
    hidden = exposed_allreduce_s(big, 64)
    last = allreduce_s(replace(big, params=1_000_000), 64)
    assert hidden < whole and hidden >= last  # the last bucket always waits
    slow = replace(big, compute_s=100.0)  # a long backward hides every bucket but the last
    assert exposed_allreduce_s(slow, 64) == last
    assert exposed_allreduce_s(big, 1) == 0.0


def test_a_master_saturates_when_its_work_exceeds_the_compute() -> None:
    service = sim.master_service_s(BASE, "downpour")
    light = 2  # 2 x service << compute: the master idles, workers scale
    heavy = int(4 * BASE.compute_s / service)  # 4x more work for the master than one cycle
    low = sim.simulate(BASE, "downpour", light, cycles=10)
    high = sim.simulate(BASE, "downpour", heavy, cycles=10)
    assert light * service < BASE.compute_s < heavy * service
    assert low["master_utilisation"] < 0.5
    assert low["samples_per_s"] / (light * sim.single_worker_rate(BASE)) > 0.8
    assert high["master_utilisation"] > 0.95
    # Saturated: one update per service time, whatever the number of workers.
    assert high["samples_per_s"] == pytest.approx(BASE.batch / service, rel=0.05)
    assert light < sim.saturation_workers(BASE, "downpour") < heavy


def test_shared_cores_cap_throughput() -> None:
    """4 peers on 2 cores cannot beat 2 processes with a core each (up to
    the measuring window's edge: throughput is counted between whole updates)."""
    single = sim.single_worker_rate(BASE)
    shared = replace(BASE, cores=2)
    assert sim.simulate(shared, "allreduce", 4, cycles=10)["samples_per_s"] <= 2 * single * 1.01
    assert sim.simulate(shared, "downpour", 3, cycles=10)["samples_per_s"] <= 2 * single * 1.01


def test_sub_masters_relieve_a_saturated_master_when_they_exchange_less_often() -> None:
    workers = 4 * int(sim.saturation_workers(BASE, "downpour"))
    flat = sim.simulate(BASE, "downpour", workers, cycles=8)["samples_per_s"]
    tree = sim.simulate(replace(BASE, masters=5, upstream_every=8), "downpour", workers, cycles=8)["samples_per_s"]
    assert tree > 1.5 * flat


def test_transport_quick_runs_on_two_ranks(tmp_path: Path) -> None:
    out = tmp_path / "transport.json"
    _bench("transport", "--quick", "--sizes", "1000,100000", "--out", str(out))
    result = json.loads(out.read_text())
    metrics = {row["metric"] for row in result["rows"]}
    assert "send/recv ping-pong: ours / raw" in metrics and "allreduce: ours / raw" in metrics
    assert {"ours", "raw"} <= set(result["details"]["wait"]) and {"ours", "raw"} <= set(result["details"]["send_wait"])
    for row in result["rows"]:
        assert row["n"] >= 1 and row["median"] is not None and row["median"] > 0


def test_report_renders_without_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import common, report

    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    text = report.render()
    assert text.startswith("# Benchmarks") and "| benchmark | metric |" in text


def test_jitter_reads_the_batches_of_a_timeline_and_the_model_pays_for_it(tmp_path: Path) -> None:
    from benchmarks import jitter

    # 3 epochs of 5 batches: the first epoch (compile) and each epoch's partial last batch are left out,
    # the rest alternate 90 and 110 ms.
    durations = [0.5, 0.1, 0.1, 0.1, 0.05] + ([0.09, 0.11] * 2 + [0.05]) * 2
    events = [{"name": "compute", "ph": "X", "ts": i * 1e6, "dur": d * 1e6} for i, d in enumerate(durations)]
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps({"traceEvents": [{"name": "apply", "ph": "X", "ts": 0, "dur": 9e9}, *events]}))
    spread = jitter.spread(jitter.steady(jitter.batch_times(trace)[1]))
    assert spread["batches"] == 8 and spread["median_ms"] == pytest.approx(100)
    assert spread["cv"] == pytest.approx(0.1) and spread["robust_cv"] == pytest.approx(0.1483, rel=1e-3)
    # A synchronous step waits for the slowest worker: more jitter, less efficiency at 1024 workers.
    efficiency = jitter.allreduce_efficiency(0.01, (1024,))
    if efficiency:  # the scaling model needs benchmarks/results/scaling.json
        calm, assumed = efficiency[1024]
        assert calm > assumed
        assert jitter.allreduce_efficiency(0.2, (1024,))[1024][0] < assumed
