"""The data pipeline for large HDF5 data sets: read-ahead stream, chunk-wise
shuffle, even work, --preload, --cache-dir with a shell-free copy command,
several inputs, sample weights, PyDataset and batch-function sources.

Unit tests run in this process; distributed behaviour runs for real under
mpiexec with a hard timeout (conftest.run_cli)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import run_cli, run_command
from fakes import IdSource
from mpilearn.config import DataConfig
from mpilearn.data.batches import worker_epoch
from mpilearn.data.cache import FileCache, copy_argv
from mpilearn.data.options import parse_size
from mpilearn.data.pipeline import WorkerData, epoch_steps
from mpilearn.data.preload import check_fits
from mpilearn.data.python_sources import GeneratorSource, PyDatasetSource
from mpilearn.data.sharding import shard
from mpilearn.data.sources import Hdf5Source
from mpilearn.errors import ConfigError, DataError

TIMEOUT_S = 150
INJECTION = "a b;touch PWNED.h5"


def _ids(batches) -> list[list[int]]:
    return [[int(v) for v in b.y] for b in batches]


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(1, 60), min_size=1, max_size=6),
    workers=st.integers(1, 4),
    batch=st.integers(1, 13),
    chunk=st.integers(1, 20),
    window=st.integers(1, 4),
    prefetch=st.sampled_from([0, 1, 3]),
    seed=st.integers(0, 2**16),
)
def test_stream_delivers_every_sample_once_per_epoch_in_the_seeded_order(
    counts, workers, batch, chunk, window, prefetch, seed
) -> None:
    mode = "files" if len(counts) >= workers else "samples"
    if sum(counts) < workers:
        return
    data = DataConfig(batch_size=batch, shard=mode, shuffle_chunk=chunk, shuffle_window=window, prefetch=prefetch)
    for epoch in range(2):
        seen: list[int] = []
        for w in range(workers):
            reader = WorkerData(IdSource(counts), data, seed, workers, w, epochs=2)
            again = WorkerData(IdSource(counts), data, seed, workers, w, epochs=2)
            try:
                if epoch:  # the stream runs across epochs: consume epoch 0 first
                    list(reader.epoch(0)), list(again.epoch(0))
                batches = list(reader.epoch(epoch))
                assert _ids(batches) == _ids(again.epoch(epoch))  # same seed, same order
            finally:
                reader.close(), again.close()
            inline = worker_epoch(IdSource(counts), reader.pieces, batch, seed, w, epoch, None, chunk, window)
            assert _ids(batches) == _ids(inline)  # reading ahead changes nothing
            assert all(len(b.y) == batch for b in batches[:-1]) and 0 < len(batches[-1].y) <= batch
            assert [b.last for b in batches] == [False] * (len(batches) - 1) + [True]
            seen.extend(i for ids in _ids(batches) for i in ids)
        assert sorted(seen) == list(range(sum(counts)))  # every sample exactly once


def test_large_files_are_read_chunk_by_chunk_and_reshuffled_every_epoch() -> None:
    source = IdSource([1000])
    orders = []
    for epoch in range(2):
        source.reads.clear()
        batches = list(worker_epoch(source, shard(source.counts, 1, 0, "files"), 50, 7, 0, epoch, None, 10, 3))
        assert max(stop - start for _, start, stop in source.reads) <= 30  # at most one window, never the file
        ids = [i for b in _ids(batches) for i in b]
        assert sorted(ids) == list(range(1000))
        orders.append(ids)
    assert orders[0] != orders[1] and orders[0] != sorted(orders[0])


def test_the_next_file_is_opened_while_the_current_one_is_read() -> None:
    class Hinted(IdSource):
        def prefetch(self, part: int) -> None:
            self.reads.append((part, -1, -1))  # (part, -1, -1): asked to open or copy `part` ahead

    source = Hinted([30, 30, 30])
    list(worker_epoch(source, shard(source.counts, 1, 0, "files"), 8, 5, 0, 0, None, 10, 1))
    parts = [part for part, start, _ in source.reads if start >= 0]
    order = list(dict.fromkeys(parts))  # files in the order read
    for current, following in zip(order, order[1:]):
        hint = source.reads.index((following, -1, -1))
        last_read_of_current = max(
            i for i, (part, start, _) in enumerate(source.reads) if part == current and start >= 0
        )
        assert hint < last_read_of_current  # requested before the current file is done


def test_a_stream_abandoned_mid_epoch_restarts_with_the_same_order() -> None:
    data = DataConfig(batch_size=4, prefetch=2, shuffle_chunk=5, shuffle_window=2)
    reader = WorkerData(IdSource([40, 30]), data, 3, 1, 0, epochs=3)
    try:
        full = _ids(reader.epoch(1))
        partial = reader.epoch(1)
        next(partial), partial.close()  # training stopped early
        assert _ids(reader.epoch(1)) == full
    finally:
        reader.close()


@pytest.mark.parametrize("policy, steps", [("cycle", 10), ("drop", 3)])
def test_even_policy_gives_every_worker_the_same_steps(policy: str, steps: int) -> None:
    source = IdSource([100, 30])
    data = DataConfig(batch_size=10, even_policy=policy)  # type: ignore[arg-type]
    assert epoch_steps(data, source, 2) == steps
    for w in range(2):
        batches = list(worker_epoch(source, shard(source.counts, 2, w, "files"), 10, 0, w, 0, steps))
        assert len(batches) == steps and batches[-1].last and not any(b.last for b in batches[:-1])
        if policy == "drop":
            ids = [i for b in _ids(batches) for i in b]
            assert len(ids) == len(set(ids))  # dropping never repeats a sample


def test_data_options_are_validated_with_the_option_named() -> None:
    assert parse_size("8G") == 8 * 2**30 and parse_size("512M") == 512 * 2**20 and parse_size("1000") == 1000
    for config, match in [
        (dict(memory_limit="lots", preload=True), "--memory-limit must be a size"),
        (dict(cache_dir="/tmp", preload=True), "use one or the other"),
        (dict(cache_dir="/tmp", copy_command="cp {src} /tmp/x"), "must contain {dst}"),
        (dict(cache_dir="/tmp", copy_command="cp '{src} {dst}"), "cannot be split"),
        (dict(even_policy="spread"), "--even-policy must be one of cycle, drop"),
        (dict(features_name="a,,b"), "--features-name 'a,,b' has an empty name"),
        (dict(shuffle_chunk=0), "--shuffle-chunk must be a positive integer"),
    ]:
        with pytest.raises(ConfigError, match=match):
            DataConfig(**config)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="needs 1.0 MiB but --memory-limit is 1.0 KiB"):
        check_fits(2**20, 1024)
    check_fits(3 * 2**30, None, available=4 * 2**30, ranks_on_node=1)
    with pytest.raises(DataError, match="needs 3.0 GiB but this machine has 4.0 GiB available for 2 rank"):
        check_fits(3 * 2**30, None, available=4 * 2**30, ranks_on_node=2)  # the node's memory is shared


def _write_grouped(path: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as handle:
        handle["inputs/b_tracks"] = rng.normal(size=(n, 3)).astype(np.float32)
        handle["inputs/a_image"] = rng.normal(size=(n, 4, 4)).astype(np.float32)
        handle["labels"] = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
        handle["targets/a_type"] = handle["labels"][()]
        handle["targets/b_charge"] = np.eye(2, dtype=np.float32)[rng.integers(0, 2, n)]
        handle["weights"] = rng.uniform(0.5, 1.5, n)
        handle["extra"] = np.arange(n, dtype=np.float64)
    return path


def test_hdf5_groups_and_name_lists_become_several_inputs(tmp_path: Path) -> None:
    path = str(_write_grouped(tmp_path / "g.h5", 20))
    source = Hdf5Source([path], "inputs", "labels", "weights")
    sig = source.signature
    assert sig.sample_shapes == ((4, 4), (3,)) and sig.input_names == (
        "inputs/a_image",
        "inputs/b_tracks",
    )  # sorted by key
    assert sig.weighted and sig.sample_bytes() == 4 * (16 + 3) + 4 * 3 + 4
    x, y, w = sig.pack(source.read(0, 2, 7))
    assert isinstance(x, list) and x[0].shape == (5, 4, 4) and x[1].shape == (5, 3) and y.shape == (5, 3)
    assert w is not None and w.dtype == np.float32 and w.shape == (5,)
    listed = Hdf5Source([path], "extra,inputs/b_tracks", "labels")
    assert listed.signature.sample_shapes == ((), (3,)) and listed.signature.input_names == ("extra", "inputs/b_tracks")
    with pytest.raises(DataError, match=r"no dataset 'missing' \(--features-name\); the file has: extra, inputs"):
        Hdf5Source([path], "missing", "labels")
    with pytest.raises(DataError, match="sample weights 'labels' have shape"):
        Hdf5Source([path], "inputs", "labels", "labels")


def test_copy_command_substitutes_file_names_as_single_arguments() -> None:
    argv = copy_argv(["xrdcp", "root://eos/{src}", "{dst}"], "/d/a b;rm -rf ~ '\".h5", "/c/{src}.h5")
    assert argv == ["xrdcp", "root://eos//d/a b;rm -rf ~ '\".h5", "/c/{src}.h5"]


def test_cache_copies_ahead_and_deletes_its_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    files = [str(_write_grouped(tmp_path / name, 8, i)) for i, name in enumerate(["one.h5", f"{INJECTION}"])]
    cache = FileCache(files, str(tmp_path / "cache"), "t", "cp {src} {dst}")
    cache.request(1)
    local = cache.local(1)
    assert Path(local).read_bytes() == Path(files[1]).read_bytes()
    assert not list(tmp_path.rglob("PWNED*"))  # the name ran no command
    cache.close()
    assert not (tmp_path / "cache" / "mpilearn-t").exists()


def test_failed_copy_names_the_file_and_the_command(tmp_path: Path) -> None:
    cache = FileCache([str(tmp_path / "gone.h5")], str(tmp_path / "cache"), "t", "cp -- {src} {dst}")
    with pytest.raises(DataError, match=r"gone.h5: copy command cp -- .*gone.h5 .* failed with exit status 1"):
        cache.local(0)
    cache.discard()


def test_pydataset_and_batch_function_sources() -> None:
    import keras

    class Pairs(keras.utils.PyDataset):
        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int):
            n = 4 if i < 2 else 2
            ids = np.arange(4 * i, 4 * i + n, dtype=np.float32)
            return (ids[:, None], ids[:, None] * 2), ids

    source = PyDatasetSource(Pairs())
    assert source.counts == (4, 4, 2) and source.signature.input_form == "list"
    x, y, _ = source.signature.pack(source.read(1, 1, 3))
    assert x[1].ravel().tolist() == [10.0, 12.0] and y.tolist() == [5.0, 6.0]

    def batches(worker_index, num_workers, epoch):
        for start in range(worker_index * 10, worker_index * 10 + 10, 4):
            ids = np.arange(start, min(start + 4, worker_index * 10 + 10), dtype=np.float32) + 100 * epoch
            yield {"a": ids[:, None]}, ids

    generated = GeneratorSource(batches, workers=2, seed=0)
    assert generated.counts == (10, 10) and generated.signature.input_form == "dict"
    epoch1 = list(worker_epoch(generated, shard(generated.counts, 2, 1, "files"), 3, 0, 1, 1))
    assert [i for b in _ids(epoch1) for i in b] == list(range(110, 120)) and isinstance(epoch1[0].x, dict)


# ---- real runs under mpiexec -------------------------------------------------------------------------------------

TWO_IN_TWO_OUT_MODEL = """
import keras
def build(input_shape, num_classes):
    image, tracks = (keras.Input(tuple(s)) for s in input_shape)
    x = keras.layers.Concatenate()([keras.layers.Flatten()(image), tracks])
    x = keras.layers.Dense(8, activation="relu")(x)
    heads = [keras.layers.Dense(n, activation="softmax")(x) for n in num_classes]
    return keras.Model([image, tracks], heads)
"""

FAIL_ON_SECOND = """
import shutil, sys
src, dst = sys.argv[1], sys.argv[2]
if "train_1" in src:
    sys.exit("disk quota exceeded")
shutil.copy(src, dst)
"""

BATCH_FUNCTION = """
import numpy as np
def batches(worker_index, num_workers, epoch, seed):
    rng = np.random.default_rng([seed, worker_index, epoch])
    for _ in range(3 + worker_index):
        x = rng.normal(size=(16, 6)).astype("float32")
        yield x, np.eye(2, dtype="float32")[(x.sum(axis=1) > 0).astype(int)]
"""

PYDATASET_FIT = """
import json, sys
import numpy as np, keras, mpilearn

class Data(keras.utils.PyDataset):
    def __len__(self):
        return 6
    def __getitem__(self, i):
        rng = np.random.default_rng(i)
        x = rng.normal(size=(20, 5)).astype("float32")
        return x, (x[:, :1] > 0).astype("float32")

model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1, activation="sigmoid")])
model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
history = mpilearn.fit(model, Data(), validation=Data(), epochs=2, batch_size=20, run_dir=sys.argv[1], quiet=True)
print(json.dumps({"samples": history["samples_seen"], "val": history["epochs"][-1]["val_accuracy"]}))
"""


def _train(
    data: Path, run_dir: Path, *extra: str, processes: int = 3, cwd: Path | None = None, train: str | None = None
):
    return run_cli(
        [
            "train",
            "--model",
            "mlp",
            "--train",
            train or str(data / "train.txt"),
            "--val",
            str(data / "val.txt"),
            "--run-dir",
            str(run_dir),
            "-n",
            str(processes),
            "--threads",
            "1",
            "--epochs",
            "2",
            "--batch",
            "16",
            "--progress",
            "lines",
            *extra,
        ],
        timeout=TIMEOUT_S,
        cwd=cwd,
    )


def _copy_data(small_data: Path, tmp_path: Path, names: list[str]) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for source, name in zip(sorted(small_data.glob("train_*.h5")), names):
        (data / name).write_bytes(source.read_bytes())
    (data / "val.h5").write_bytes(next(small_data.glob("val_*.h5")).read_bytes())
    (data / "train.txt").write_text("".join(f"{name}\n" for name in names))
    (data / "val.txt").write_text("val.h5\n")
    return data


def test_cache_dir_with_hostile_names_and_uneven_shards_under_sync(small_data: Path, tmp_path: Path) -> None:
    """3 files for 2 workers (128 and 64 samples) under --algo sync with --even-policy cycle:
    8 steps each, no hang; the files come through the node-local cache."""
    data = _copy_data(small_data, tmp_path, ["train_0.h5", INJECTION, 'it\'s "quoted".h5'])
    cache = tmp_path / "cache"
    result = _train(
        data,
        tmp_path / "run",
        "--cache-dir",
        str(cache),
        "--copy-command",
        "cp {src} {dst}",
        "--algo",
        "sync",
        "--even-policy",
        "cycle",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.output
    assert not list(tmp_path.rglob("PWNED*")), "a file name ran a command"
    assert cache.is_dir() and not list(cache.iterdir())  # copies deleted at the end
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["samples_seen"] == 2 * 2 * 8 * 16  # epochs * workers * steps of the larger shard * batch


def test_failed_copy_ends_the_job_with_the_file_and_command_named(small_data: Path, tmp_path: Path) -> None:
    data = _copy_data(small_data, tmp_path, ["train_0.h5", "train_1.h5", "train_2.h5", "train_3.h5"])
    (tmp_path / "copy.py").write_text(FAIL_ON_SECOND)
    command = f"{sys.executable} {tmp_path / 'copy.py'} {{src}} {{dst}}"
    result = _train(data, tmp_path / "run", "--cache-dir", str(tmp_path / "cache"), "--copy-command", command)
    assert result.returncode != 0
    assert "train_1.h5: copy command" in result.stderr and "copy.py" in result.stderr
    assert "failed with exit status 1: disk quota exceeded" in result.stderr
    assert not list((tmp_path / "cache").rglob("*.h5")), "a failed job left copies behind"


def test_groups_of_two_inputs_and_two_outputs_with_weights_and_preload_on_three_ranks(tmp_path: Path) -> None:
    """Also --algo sync with --even-policy drop: shards of 80 and 40 samples take 5 steps of 8 each."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        _write_grouped(data / f"train_{i}.h5", 40, i)
    _write_grouped(data / "val.h5", 30, 9)
    (data / "train.txt").write_text("train_0.h5\ntrain_1.h5\ntrain_2.h5\n")
    (data / "val.txt").write_text("val.h5\n")
    (tmp_path / "two.py").write_text(TWO_IN_TWO_OUT_MODEL)
    result = run_cli(
        [
            "train",
            "--model",
            f"{tmp_path / 'two.py'}:build",
            "--train",
            str(data / "train.txt"),
            "--val",
            str(data / "val.txt"),
            "--features-name",
            "inputs",
            "--labels-name",
            "targets",
            "--sample-weights-name",
            "weights",
            "--preload",
            "--memory-limit",
            "1M",
            "--algo",
            "sync",
            "--even-policy",
            "drop",
            "--run-dir",
            str(tmp_path / "run"),
            "-n",
            "3",
            "--threads",
            "1",
            "--epochs",
            "2",
            "--batch",
            "8",
            "--progress",
            "lines",
        ],
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, result.output
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    last = history["epochs"][-1]
    assert history["samples_seen"] == 2 * 2 * 5 * 8 and np.isfinite(last["val_loss"])
    assert len([k for k in last if k.endswith("_accuracy")]) == 2  # one per output


def test_preload_beyond_the_memory_limit_is_one_clear_error(small_data: Path, tmp_path: Path) -> None:
    result = _train(small_data, tmp_path / "run", "--preload", "--memory-limit", "4K")
    assert result.returncode == 2, result.output
    assert result.stderr.count("mpilearn: error") == 1
    assert "--preload: the largest worker shard needs" in result.stderr and "--memory-limit is 4.0 KiB" in result.stderr
    assert not (tmp_path / "run" / "history.json").exists()


def test_batch_function_trains_under_sync(small_data: Path, tmp_path: Path) -> None:
    (tmp_path / "gen.py").write_text(BATCH_FUNCTION)
    result = run_cli(
        [
            "train",
            "--model",
            "mlp",
            "--train",
            f"{tmp_path / 'gen.py'}:batches",
            "--val",
            f"{tmp_path / 'gen.py'}:batches",
            "--run-dir",
            str(tmp_path / "run"),
            "-n",
            "3",
            "--threads",
            "1",
            "--epochs",
            "2",
            "--batch",
            "16",
            "--algo",
            "sync",
            "--progress",
            "lines",
        ],
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, result.output
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["samples_seen"] == 2 * 2 * 4 * 16  # workers give 3 and 4 batches: cycled to 4 steps each


def test_fit_takes_a_pydataset(tmp_path: Path) -> None:
    (tmp_path / "fit.py").write_text(PYDATASET_FIT)
    result = run_command([sys.executable, str(tmp_path / "fit.py"), str(tmp_path / "run")], timeout=TIMEOUT_S)
    assert result.returncode == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["samples"] == 2 * 6 * 20 and 0 <= summary["val"] <= 1


def test_integer_class_ids_size_the_built_in_model_from_the_data(small_data: Path, tmp_path: Path) -> None:
    """Labels stored as class ids (not one-hot): rank 0 finds the number of
    classes from the label datasets, every rank builds the same model, and
    the sparse cross-entropy trains it."""
    listing = []
    for path in (small_data / "train.txt").read_text().split() + (small_data / "val.txt").read_text().split():
        with h5py.File(path, "r") as source, h5py.File(tmp_path / Path(path).name, "w") as target:
            target["features"] = source["features"][()]
            target["labels"] = np.argmax(source["labels"][()], axis=1).astype(np.int64)
        listing.append(str(tmp_path / Path(path).name))
    (tmp_path / "train.txt").write_text("\n".join(listing[:-1]) + "\n")
    (tmp_path / "val.txt").write_text(listing[-1] + "\n")
    classes = int(np.max([h5py.File(p, "r")["labels"][()].max() for p in listing[:-1]])) + 1
    source = Hdf5Source(listing[:-1])
    assert source.largest_labels(chunk=7) == [classes - 1]  # chunked scan of the labels only

    result = run_cli(
        [
            "train",
            "--model",
            "mlp",
            "--train",
            str(tmp_path / "train.txt"),
            "--val",
            str(tmp_path / "val.txt"),
            "--epochs",
            "3",
            "--batch",
            "16",
            "-n",
            "2",
            "--threads",
            "1",
            "--run-dir",
            str(tmp_path / "run"),
        ],
        timeout=180,
    )
    assert result.returncode == 0, result.output
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["config"]["model"]["loss"] in (None, "sparse_categorical_crossentropy")
    import keras

    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert model.output_shape[-1] == classes
    assert history["epochs"][-1]["val_accuracy"] > 1.0 / classes + 0.1  # learned beyond chance
