"""Tests of the synthetic calorimeter-shower generator (small and fast)."""

from __future__ import annotations

import dataclasses
import pathlib

import h5py
import numpy as np
import pytest

from mpilearn.data.synthetic import (
    CLASS_NAMES,
    ShowerSpec,
    simulate_showers,
    write_dataset,
)

SHAPE = (8, 8, 8)


def _sim(n: int = 50, seed: int = 0, shape=SHAPE, num_classes: int = 3):
    return simulate_showers(n, shape, num_classes, np.random.default_rng(seed))


def test_shapes_dtypes_and_one_hot_labels() -> None:
    features, labels = _sim(50, num_classes=3)
    assert features.shape == (50, *SHAPE, 1)
    assert labels.shape == (50, 3)
    assert features.dtype == np.float32 and labels.dtype == np.float32
    assert np.isfinite(features).all()
    assert (features >= 0).all()  # zero-suppressed readout
    assert set(np.unique(labels)) <= {0.0, 1.0}
    np.testing.assert_array_equal(labels.sum(axis=1), 1.0)
    # Every event deposits something: no empty images.
    assert (features.reshape(50, -1).sum(axis=1) > 0).all()


def test_non_cubic_shape_and_all_classes() -> None:
    features, labels = _sim(60, shape=(6, 5, 7), num_classes=len(CLASS_NAMES))
    assert features.shape == (60, 6, 5, 7, 1)
    assert labels.shape == (60, len(CLASS_NAMES))
    # Classes are drawn at random but every one should appear in 60 events.
    assert (labels.sum(axis=0) > 0).all()


def test_zero_events() -> None:
    features, labels = _sim(0)
    assert features.shape == (0, *SHAPE, 1) and labels.shape == (0, 3)


def test_same_seed_same_arrays_different_seed_differs() -> None:
    f1, l1 = _sim(50, seed=7)
    f2, l2 = _sim(50, seed=7)
    f3, l3 = _sim(50, seed=8)
    assert f1.tobytes() == f2.tobytes() and l1.tobytes() == l2.tobytes()
    assert f1.tobytes() != f3.tobytes()
    assert not np.array_equal(l1, l3)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"files": 0}, r"files.*0.*>= 1"),
        ({"files": 2.5}, r"files.*2\.5"),
        ({"files": True}, r"files.*True"),
        ({"val_files": -1}, r"val_files.*-1.*>= 0"),
        ({"events_per_file": 0}, r"events_per_file.*0"),
        ({"shape": (8, 8)}, r"shape.*\(8, 8\).*3 integers"),
        ({"shape": (8, 1, 8)}, r"shape.*>= 2"),
        ({"shape": "888"}, r"shape"),
        ({"num_classes": 1}, r"num_classes.*1.*between 2 and"),
        ({"num_classes": len(CLASS_NAMES) + 1}, r"num_classes"),
        ({"seed": -3}, r"seed.*-3"),
    ],
)
def test_spec_validation(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        ShowerSpec(**kwargs)


def test_spec_normalises_list_shape_and_is_frozen() -> None:
    spec = ShowerSpec(shape=[4, 5, 6])  # type: ignore[arg-type]
    assert spec.shape == (4, 5, 6)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.files = 3  # type: ignore[misc]


def test_simulate_rejects_bad_arguments() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="num_classes"):
        simulate_showers(5, SHAPE, 9, rng)
    with pytest.raises(ValueError, match="n_events"):
        simulate_showers(-1, SHAPE, 3, rng)
    with pytest.raises(ValueError, match="shape"):
        simulate_showers(5, (8, 8), 3, rng)


def _read_list(path: pathlib.Path) -> list[pathlib.Path]:
    return [pathlib.Path(line) for line in path.read_text().splitlines()]


def test_write_dataset_files_and_lists(tmp_path: pathlib.Path) -> None:
    spec = ShowerSpec(files=2, val_files=1, events_per_file=20, shape=SHAPE, seed=3)
    train_list, val_list = write_dataset(tmp_path / "out", spec)
    assert train_list.name == "train.txt" and val_list.name == "val.txt"
    train, val = _read_list(train_list), _read_list(val_list)
    assert [p.name for p in train] == ["train_000.h5", "train_001.h5"]
    assert [p.name for p in val] == ["val_000.h5"]
    for path in train + val:
        assert path.is_absolute() and path.is_file()
        with h5py.File(path, "r") as h5:
            assert h5["features"].shape == (20, *SHAPE, 1)
            assert h5["features"].dtype == np.float32
            assert h5["labels"].shape == (20, 3)
            np.testing.assert_array_equal(h5["labels"][:].sum(axis=1), 1.0)
            assert h5.attrs["seed"] == 3
            assert list(h5.attrs["class_names"]) == list(CLASS_NAMES[:3])
            assert h5.attrs["generator"] == "mpilearn.data.synthetic"
    # Atomic writes leave no temporaries behind.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "train.txt",
        "train_000.h5",
        "train_001.h5",
        "val.txt",
        "val_000.h5",
    ]
    # Files are distinct streams: no two files hold the same events.
    with h5py.File(train[0]) as a, h5py.File(train[1]) as b, h5py.File(val[0]) as c:
        fa, fb, fc = a["features"][:], b["features"][:], c["features"][:]
    assert not np.array_equal(fa, fb) and not np.array_equal(fa, fc)


def test_write_dataset_deterministic_and_independent_of_file_count(
    tmp_path: pathlib.Path,
) -> None:
    small = ShowerSpec(files=1, val_files=1, events_per_file=15, shape=SHAPE, seed=11)
    big = dataclasses.replace(small, files=3, val_files=2)
    other = dataclasses.replace(small, seed=12)
    lists = {name: write_dataset(tmp_path / name, spec) for name, spec in (("a", small), ("b", big), ("c", other))}

    def arrays(name: str, split: int, index: int) -> tuple[bytes, bytes]:
        path = _read_list(lists[name][split])[index]
        with h5py.File(path) as h5:
            return h5["features"][:].tobytes(), h5["labels"][:].tobytes()

    assert arrays("a", 0, 0) == arrays("b", 0, 0)
    assert arrays("a", 1, 0) == arrays("b", 1, 0)
    assert arrays("a", 0, 0)[0] != arrays("c", 0, 0)[0]
    # Regenerating in place gives the same content again.
    write_dataset(tmp_path / "a", small)
    assert arrays("a", 0, 0) == arrays("b", 0, 0)


def test_no_validation_files_gives_empty_list(tmp_path: pathlib.Path) -> None:
    spec = ShowerSpec(files=1, val_files=0, events_per_file=5, shape=SHAPE)
    train_list, val_list = write_dataset(tmp_path, spec)
    assert len(_read_list(train_list)) == 1
    assert val_list.read_text() == ""


def _profile_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-event energy-weighted depth centroid and lateral RMS width (cells)."""
    x = features[..., 0].astype(np.float64)
    n, depth, height, width = x.shape
    total = x.sum(axis=(1, 2, 3))
    t = np.arange(depth)
    centroid = (x.sum(axis=(2, 3)) * t).sum(axis=1) / total
    iy, ix = np.arange(height), np.arange(width)
    py, px = x.sum(axis=(1, 3)), x.sum(axis=(1, 2))
    cy = (py * iy).sum(axis=1) / total
    cx = (px * ix).sum(axis=1) / total
    var = ((py * (iy - cy[:, None]) ** 2).sum(axis=1) + (px * (ix - cx[:, None]) ** 2).sum(axis=1)) / total
    return centroid, np.sqrt(var)


@pytest.mark.parametrize("shape", [SHAPE, (25, 16, 16)])
def test_physics_em_showers_shallower_and_narrower_than_hadronic(shape) -> None:
    features, labels = simulate_showers(300, shape, 3, np.random.default_rng(5))
    label = labels.argmax(axis=1)
    centroid, width = _profile_stats(features)
    em, had = label == 0, label == 1
    assert em.sum() > 50 and had.sum() > 50
    # Hadronic showers start later (interaction length >> X0) and are longer.
    assert centroid[em].mean() + 0.5 < centroid[had].mean(), (centroid[em].mean(), centroid[had].mean())
    # ...and wider.
    assert width[em].mean() * 1.15 < width[had].mean(), (width[em].mean(), width[had].mean())
    # ...and fluctuate more from event to event.
    assert centroid[em].std() < centroid[had].std()


def test_physics_neutral_pions_wider_than_single_em_showers() -> None:
    """pi0 -> gamma gamma gives two showers: laterally wider than a photon."""
    features, labels = simulate_showers(400, (25, 25, 25), 3, np.random.default_rng(9))
    label = labels.argmax(axis=1)
    _, width = _profile_stats(features)
    assert np.median(width[label == 0]) < np.median(width[label == 2])
