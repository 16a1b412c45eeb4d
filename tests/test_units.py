"""Config validation, file lists and the flat layout."""

from __future__ import annotations

import numpy as np
import pytest

from mpilearn.config import AlgorithmConfig, DataConfig, ModelConfig, RunConfig
from mpilearn.data.filelist import read_file_list, resolve_files
from mpilearn.errors import ConfigError, DataError
from mpilearn.flat import HEADER_SIZE, FlatLayout, Message


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: RunConfig(epochs=0), "--epochs must be a positive integer, got 0"),
        (lambda: RunConfig(epochs=-2), "--epochs"),
        (lambda: DataConfig(batch_size=0), "--batch must be a positive integer"),
        (lambda: DataConfig(shard="rows"), "--shard must be one of files, samples; got 'rows'"),
        (lambda: AlgorithmConfig(name="magic"), "--algo must be one of"),
        (lambda: AlgorithmConfig(sync_every=0), "--sync-every"),
        (lambda: ModelConfig(learning_rate=-1.0), "--lr must be a positive number"),
        (lambda: RunConfig(threads=0), "--threads"),
    ],
)
def test_config_rejects_bad_values_naming_the_option(make, match) -> None:
    with pytest.raises(ConfigError, match=match):
        make()


def test_config_round_trips_and_refuses_unknown_keys() -> None:
    config = RunConfig(data=DataConfig(train_files=("a.h5",), batch_size=8), epochs=3)
    assert RunConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown configuration key 'data.bach_size'"):
        RunConfig.from_dict({"data": {"bach_size": 3}})


def test_file_list_resolves_relative_paths_and_skips_comments(tmp_path) -> None:
    (tmp_path / "train.txt").write_text("# comment\n\na.h5\n/abs/b.h5\n")
    assert read_file_list(tmp_path / "train.txt") == (str(tmp_path.resolve() / "a.h5"), "/abs/b.h5")
    assert resolve_files(str(tmp_path / "x.h5"), "train") == (str(tmp_path / "x.h5"),)


def test_file_list_errors_name_the_list(tmp_path) -> None:
    with pytest.raises(DataError, match="file list .*missing.txt does not exist"):
        read_file_list(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n# nothing\n")
    with pytest.raises(DataError, match="empty.txt names no files"):
        read_file_list(tmp_path / "empty.txt")


def test_flat_layout_split_and_pack_are_inverse() -> None:
    layout = FlatLayout(((3, 2), (4,)), ((2,),))
    assert layout.size == 12 and layout.num_trainable == 10 and layout.num_state == 2
    arrays = [np.arange(6, dtype=np.float32).reshape(3, 2), np.ones(4, np.float32), np.full(2, 7, np.float32)]
    flat = layout.pack(arrays)
    for got, want in zip(layout.split(flat), arrays):
        np.testing.assert_array_equal(got, want)
    message = Message(layout)
    assert message.buffer.size == HEADER_SIZE + 12
    message.trainable[:] = 1.0
    message.state[:] = 2.0
    assert message.payload.sum() == 10 + 4  # views, not copies
    with pytest.raises(ValueError, match="layout needs"):
        layout.split(np.zeros(5, np.float32))


def test_start_up_parts_sum_to_the_total_and_the_slowest_worker_is_named() -> None:
    from mpilearn import startup_times

    clock = startup_times.StartupClock(age=2.0, launched_at=None)
    clock.mark("imports")
    clock.mark("keras")
    clock.finish("first batch")
    clock.mark("wait")  # after finish: ignored
    record = clock.record()
    assert record["parts"]["imports"] >= 2.0 and "wait" not in record["parts"]
    assert sum(record["parts"].values()) == pytest.approx(record["total_s"], abs=0.01)
    master = {"started": 0.0, "total_s": 9.0, "parts": {"keras": 9.0}}
    workers = [{"started": 0.0, "total_s": t, "parts": {"keras": t - 1, "first batch": 1.0}} for t in (5.0, 6.0)]
    section = startup_times.section([master, *workers], ["master", "worker", "worker"])
    assert (section["first_batch_s"], section["slowest_rank"]) == (6.0, 2)  # a master's longer wait does not count
    assert startup_times.summary(section) == (
        "start-up: 6.0 s to the first batch (keras 5.0, first batch 1.0), slowest rank 2 of 3"
    )
    assert 0.0 <= startup_times.process_age() < 3600
