"""`mpilearn optimize`: search spaces (pure), and real searches under mpiexec.

Every search runs the tiny mlp (or the builder below) on 4 training files of
64 events at 8x8x8 with one thread per rank, under a hard timeout.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from conftest import make_data, run_cli, run_mpi
from mpilearn.config import DataConfig, RunConfig
from mpilearn.errors import ConfigError, DataError
from mpilearn.hpo.config import SearchConfig, default_direction
from mpilearn.hpo.folds import kfold
from mpilearn.hpo.layout import Layout
from mpilearn.hpo.settings import apply_settings
from mpilearn.hpo.space import SearchSpace, check_space, load_space, parse_space, read_space_file

SPACE_TOML = """
[lr]
type = "float"
low = 1e-3
high = 1e-2
log = true

[units]
type = "int"
low = 8
high = 32
step = 8
"""

# A builder that refuses one width, and search spaces that pick each trial's
# values by its number, so which trial fails or is pruned is deterministic.
MODEL_PY = '''
def build(input_shape, num_classes, width=32):
    import keras  # here, not at the top: the coordinator loads this file for its search spaces only

    if width == 13:
        raise ValueError("width 13 is refused on purpose")
    inputs = keras.Input(tuple(input_shape))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(width, activation="relu")(x)
    if width == 7:  # a model whose loss is NaN from the first batch
        x = keras.layers.Lambda(lambda t: t * float("nan"))(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))


def mixed(trial):
    """Trial 1 builds an invalid model; trial 2 has a learning rate that learns nothing; trial 3's loss is NaN."""
    width = {1: 13, 3: 7}.get(trial.number, 32)
    lr = 1e-7 if trial.number == 2 else 3e-3
    return {"width": width, "lr": lr}
'''


def _base(**data: object) -> RunConfig:
    return RunConfig(data=DataConfig(train_files=("a.h5", "b.h5"), val_files=("v.h5",), **data))  # type: ignore[arg-type]


# ---- pure: space files ------------------------------------------------------------------
def test_space_table_becomes_optuna_distributions() -> None:
    space = parse_space(
        {
            "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "units": {"type": "int", "low": 8, "high": 64, "step": 8},
            "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
            "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
            "sync-every": {"type": "int", "low": 1, "high": 4},
        },
        "space.toml",
    )
    assert space["lr"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert space["units"] == IntDistribution(8, 64, step=8)
    assert space["dropout"] == FloatDistribution(0.0, 0.5, step=0.1)
    assert space["optimizer"] == CategoricalDistribution(["adam", "sgd"])
    assert space["sync_every"] == IntDistribution(1, 4)  # - and _ name the same option


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "at least one parameter table"),
        ({"lr": 0.1}, r"\[lr\] must be a table with type"),
        ({"lr": {"low": 1, "high": 2}}, r"\[lr\] needs type = one of int, float, categorical; got None"),
        ({"lr": {"type": "real", "low": 1, "high": 2}}, "got 'real'"),
        (
            {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "lgo": True}},
            "unknown key 'lgo'; allowed: type, low, high",
        ),
        ({"lr": {"type": "float", "high": 1e-2}}, r"\[lr\] needs low"),
        ({"lr": {"type": "float", "low": "small", "high": 1e-2}}, "low must be a finite number, got 'small'"),
        ({"lr": {"type": "float", "low": 1e-2, "high": 1e-4}}, "low 0.01 is greater than high 0.0001"),
        ({"lr": {"type": "float", "low": 0.0, "high": 1e-2, "log": True}}, "log = true needs low > 0"),
        ({"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": "yes"}}, "log must be true or false"),
        ({"u": {"type": "int", "low": 1, "high": 8, "step": 2, "log": True}}, "step cannot be combined with log"),
        ({"u": {"type": "int", "low": 1, "high": 8, "step": 0}}, "step must be a positive number"),
        ({"u": {"type": "int", "low": 1.5, "high": 8}}, "low of an int parameter must be a whole number, got 1.5"),
        ({"o": {"type": "categorical"}}, r"\[o\] needs choices = a non-empty list"),
        ({"o": {"type": "categorical", "choices": []}}, "non-empty list"),
        ({"o": {"type": "categorical", "choices": ["a", "a"]}}, "choices repeat a value"),
        ({"o": {"type": "categorical", "choices": [[1, 2]]}}, "must be a number, a string, a boolean or null"),
        ({"o": {"type": "categorical", "choices": ["a"], "low": 1}}, "takes choices, not 'low'"),
        ({"u": {"type": "int", "low": 1, "high": 2, "choices": [1]}}, 'choices belong to type = "categorical"'),
        (
            {"sync-every": {"type": "int", "low": 1, "high": 2}, "sync_every": {"type": "int", "low": 1, "high": 2}},
            "appears twice",
        ),
        ({"num_classes": {"type": "int", "low": 1, "high": 2}}, "set from the data"),
    ],
)
def test_bad_space_tables_are_refused_with_the_reason(table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_space(table, "space.toml")
    assert str(caught.value).startswith("space.toml")


def test_space_files_toml_and_yaml(tmp_path: Path) -> None:
    toml = tmp_path / "space.toml"
    toml.write_text(SPACE_TOML)
    yaml = tmp_path / "space.yaml"
    yaml.write_text(
        "lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\nunits: {type: int, low: 8, high: 32, step: 8}\n"
    )
    assert read_space_file(str(toml)) == read_space_file(str(yaml))
    broken = tmp_path / "broken.toml"
    broken.write_text("[lr\ntype = 1")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        read_space_file(str(broken))
    with pytest.raises(ConfigError, match="does not exist"):
        read_space_file(str(tmp_path / "missing.toml"))
    (tmp_path / "space.json").write_text("{}")
    with pytest.raises(ConfigError, match="give a .toml, .yaml or .yml file"):
        read_space_file(str(tmp_path / "space.json"))


def test_space_names_must_be_options_or_builder_arguments(tmp_path: Path) -> None:
    good = SearchSpace(
        "s.toml",
        distributions=parse_space(
            {"units": {"type": "int", "low": 8, "high": 16}, "lr": {"type": "float", "low": 1e-3, "high": 1e-2}},
            "s.toml",
        ),
    )
    check_space(good, _base().replace(model=_base().model.__class__(spec="mlp")))
    typo = SearchSpace("s.toml", distributions=parse_space({"unitz": {"type": "int", "low": 8, "high": 16}}, "s.toml"))
    with pytest.raises(
        ConfigError,
        match=r"'unitz' is neither a training option .* nor an argument of built-in model 'mlp' "
        r"\(it takes dropout, layers_count, units\)",
    ):
        check_space(typo, _base().replace(model=_base().model.__class__(spec="mlp")))
    bad_bound = SearchSpace(
        "s.toml", distributions=parse_space({"batch": {"type": "int", "low": 0, "high": 64}}, "s.toml")
    )
    with pytest.raises(ConfigError, match=r"\[batch\] allows 0, which fails: --batch must be a positive integer"):
        check_space(bad_bound, _base())


def test_search_space_function_from_the_model_file(tmp_path: Path) -> None:
    model = tmp_path / "model.py"
    model.write_text(
        MODEL_PY + "\n\ndef search_space(trial):\n    return {'width': trial.suggest_int('width', 4, 8)}\n"
    )
    space = load_space("", f"{model}:build")
    assert space.function is not None and space.source.endswith("model.py:search_space")
    study = optuna.create_study()
    trial, settings = space.sample(study)
    assert settings == {"width": trial.params["width"]}
    assert load_space(f"{model}:mixed", "mlp").function is not None
    with pytest.raises(ConfigError, match="--space is required"):
        load_space("", "mlp")


def test_settings_set_training_options_and_builder_arguments() -> None:
    base = _base()
    config = apply_settings(
        base, {"lr": 0.01, "batch": 64.0, "optimizer": "sgd", "sync_every": 3, "epochs": 2, "units": 16}
    )
    assert config.model.learning_rate == 0.01 and config.model.optimizer == "sgd"
    assert config.data.batch_size == 64 and isinstance(config.data.batch_size, int)
    assert config.algorithm.sync_every == 3 and config.epochs == 2
    assert config.model.model_kwargs == {"units": 16}
    with pytest.raises(ConfigError, match="--batch must be a positive integer"):
        apply_settings(base, {"batch": 0})
    with pytest.raises(ConfigError, match="'batch' sets an integer option, got 32.5"):
        apply_settings(base, {"batch": 32.5})
    with pytest.raises(ConfigError, match="--elastic-force must be in"):
        apply_settings(base, {"elastic_force": 2.0})


def test_layout_blocks_folds_and_errors() -> None:
    layout = Layout(7, 3)
    assert layout.blocks == 2
    assert [layout.block_of(r) for r in range(7)] == [None, 0, 0, 0, 1, 1, 1]
    assert layout.leader(1) == 4
    folds = Layout(9, 4, n_fold=2)
    assert [folds.fold_of(r) for r in range(1, 9)] == [0, 0, 1, 1, 0, 0, 1, 1]
    assert folds.fold_leader(1) == 2
    with pytest.raises(ConfigError, match=r"--block-size 2 does not divide the 5 training ranks .* use -n 5 or -n 7"):
        Layout(6, 2)
    with pytest.raises(ConfigError, match="at least 2 processes"):
        Layout(1, 1)
    with pytest.raises(ConfigError, match="not a multiple of 2"):
        Layout(4, 3, n_fold=2)
    with pytest.raises(ConfigError, match="each block has 2 processes: --masters 2 needs more than 2 processes"):
        Layout(5, 2).check_algorithm(_base().algorithm.__class__(masters=2))
    Layout(3, 1).check_algorithm(_base().algorithm)  # a block of one trains alone


def test_kfold_splits_whole_files() -> None:
    files = [f"f{i}" for i in range(5)]
    folds = kfold(files, 2)
    assert folds == [(("f2", "f3", "f4"), ("f0", "f1")), (("f0", "f1"), ("f2", "f3", "f4"))]
    for train, val in kfold(files, 3):
        assert sorted(train + val) == files and not set(train) & set(val)
    with pytest.raises(DataError, match="--n-fold 3 needs at least 3 training files"):
        kfold(files[:2], 3)


def test_search_config_checks() -> None:
    assert default_direction("val_loss") == "minimize" and default_direction("val_accuracy") == "maximize"
    with pytest.raises(ConfigError, match="--val is required"):
        SearchConfig(run=RunConfig(data=DataConfig(train_files=("a.h5",))), trials=2)
    with pytest.raises(ConfigError, match="--metric must name a validation result"):
        SearchConfig(run=_base(), metric="accuracy")
    with pytest.raises(ConfigError, match="--resume needs the search's directory"):
        SearchConfig(run=_base(), resume=True)


@pytest.mark.parametrize("sampler", ["tpe", "gp", "cmaes", "nsga2"])
def test_every_sampler_proposes_points_of_a_file_space(sampler: str) -> None:
    from mpilearn.hpo.study import make_pruner, make_sampler

    search = SearchConfig(run=_base(), sampler=sampler, sampler_startup_trials=2, population=2, pruner="hyperband")
    study = optuna.create_study(sampler=make_sampler(search, seed=0), pruner=make_pruner(search, epochs_tuned=False))
    space = SearchSpace(
        "s.toml",
        distributions=parse_space(
            {
                "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                "units": {"type": "int", "low": 8, "high": 64},
            },
            "s.toml",
        ),
    )
    for _ in range(4):
        trial, settings = space.sample(study)
        assert 1e-4 <= settings["lr"] <= 1e-2 and 8 <= settings["units"] <= 64
        study.tell(trial, (settings["lr"] - 1e-3) ** 2 + settings["units"] / 1e4)
    assert len(study.trials) == 4 and study.best_value is not None


# ---- real searches ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data(tmp_path_factory.mktemp("hpo-data"), files=4, events=64)


@pytest.fixture(scope="module")
def space_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hpo-space") / "space.toml"
    path.write_text(SPACE_TOML)
    return path


def _search_args(data: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "optimize",
        "--train",
        str(data / "train.txt"),
        "--val",
        str(data / "val.txt"),
        "--threads",
        "1",
        "--run-dir",
        str(run_dir),
        *extra,
    ]


def _study(run_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name="mpilearn", storage=f"sqlite:///{run_dir / 'study.db'}")


def test_two_blocks_of_two_record_every_trial(data: Path, space_file: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "search"
    result = run_cli(
        _search_args(
            data,
            run_dir,
            "--model",
            "mlp",
            "--space",
            str(space_file),
            "-n",
            "5",
            "--block-size",
            "2",
            "--trials",
            "4",
            "--epochs",
            "1",
            "--metric",
            "val_accuracy",
        ),
        timeout=150,
    )
    assert result.returncode == 0, result.output
    assert "2 blocks of 2 (ranks 1-2, 3-4)" in result.stdout
    trials = _study(run_dir).trials
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state is TrialState.COMPLETE for t in trials), [(t.number, t.state, t.user_attrs) for t in trials]
    assert {t.user_attrs["block"] for t in trials} == {0, 1}  # both blocks trained
    assert all(set(t.params) == {"lr", "units"} for t in trials)
    for t in trials:
        assert (run_dir / "trials" / f"{t.number:04d}" / "history.json").is_file()
    best = json.loads((run_dir / "best.json").read_text())
    assert best["direction"] == "maximize" and best["counts"]["complete"] == 4
    assert best["best"]["number"] == _study(run_dir).best_trial.number
    assert f"best: trial {best['best']['number']}" in result.stdout


def test_failed_and_pruned_trials_do_not_stop_the_search(data: Path, tmp_path: Path) -> None:
    model = tmp_path / "model.py"
    model.write_text(MODEL_PY)
    run_dir = tmp_path / "search"
    args = _search_args(
        data,
        run_dir,
        "--model",
        f"{model}:build",
        "--space",
        f"{model}:mixed",
        "-n",
        "2",
        "--trials",
        "5",
        "--epochs",
        "2",
        "--pruner",
        "median",
        "--pruner-startup-trials",
        "1",
    )
    result = run_cli(args, timeout=120)
    assert result.returncode == 0, result.output
    trials = _study(run_dir).trials
    states = [t.state for t in trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED, TrialState.FAIL, TrialState.COMPLETE], [
        (t.number, t.state, t.intermediate_values, t.user_attrs) for t in trials
    ]
    assert "width 13 is refused on purpose" in trials[1].user_attrs["error"]
    assert "is nan after epoch 1" in trials[3].user_attrs["error"]
    assert not trials[3].intermediate_values  # stopped at its first validation, never reported
    # Pruned after its first epoch: its val_loss was above the completed trial's.
    assert list(trials[2].intermediate_values) == [1]
    assert trials[2].intermediate_values[1] > trials[0].intermediate_values[1]
    assert len(trials[0].intermediate_values) == 2
    again = run_cli(args, timeout=60)  # the same search again, without --resume
    assert again.returncode == 2 and "pass --resume to continue it" in again.stderr, again.output


def test_kfold_search_records_mean_and_spread(data: Path, space_file: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "search"
    result = run_cli(
        _search_args(
            data,
            run_dir,
            "--model",
            "mlp",
            "--space",
            str(space_file),
            "-n",
            "3",
            "--block-size",
            "2",
            "--n-fold",
            "2",
            "--trials",
            "2",
            "--epochs",
            "2",
            "--pruner",
            "median",
            "--pruner-startup-trials",
            "5",
        ),
        timeout=150,
    )
    assert "1 block of 2 (ranks 1-2), each split into 2 folds of 1" in result.stdout, result.output
    assert result.returncode == 0, result.output
    trials = _study(run_dir).trials
    assert len(trials) == 2 and all(t.state is TrialState.COMPLETE for t in trials)
    for t in trials:
        folds = t.user_attrs["fold_values"]
        assert len(folds) == 2
        assert t.value == pytest.approx(sum(folds) / 2)
        assert t.user_attrs["fold_std"] == pytest.approx(abs(folds[0] - folds[1]) / 2)
        histories = [
            json.loads((run_dir / "trials" / f"{t.number:04d}" / f"fold-{k}" / "history.json").read_text())
            for k in range(2)
        ]
        for epoch in (1, 2):  # each epoch reported for pruning is the mean over the folds
            assert t.intermediate_values[epoch] == pytest.approx(
                sum(h["epochs"][epoch - 1]["val_loss"] for h in histories) / 2
            )


def _finished(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as connection:
            return connection.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.Error:
        return 0  # tables not created yet, or busy


def _ranks_of(marker: str) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, marker)]


def _cmdline_has(proc: Path, marker: str) -> bool:
    try:
        return int(proc.name) != os.getpid() and marker.encode() in (proc / "cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.timeout(900)  # three searches of 3 Keras ranks on a loaded 2-core machine
def test_interrupted_and_stuck_searches_resume_without_loss_or_duplicate(
    data: Path, space_file: Path, tmp_path: Path
) -> None:
    """SIGTERM to the launcher after one trial: the search stops cleanly (143,
    how to resume), the running trial does not count. Resumed with a block
    rank that hangs: the coordinator names it, every rank is gone, and the
    trials it left running are recovered. Resumed again: --trials results."""
    run_dir = tmp_path / "search"
    args = _search_args(
        data,
        run_dir,
        "--model",
        "mlp",
        "--space",
        str(space_file),
        "-n",
        "3",
        "--block-size",
        "1",
        "--trials",
        "6",
        "--epochs",
        "3",
    )
    env = dict(os.environ)
    env.pop("MPILEARN_LAUNCHED", None)
    log = tmp_path / "first.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "mpilearn", *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300  # 3 ranks importing Keras on a loaded 2-core machine
        while _finished(run_dir / "study.db") < 1:
            assert process.poll() is None, "the search ended before it could be stopped"
            assert time.monotonic() < deadline, "no trial finished within 300s"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)  # a batch system's time limit
        process.wait(timeout=180)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    output = log.read_text()
    assert process.returncode == 128 + signal.SIGTERM, output
    assert re.search(
        r"mpilearn: search interrupted by SIGTERM after \d+ of 6 trials.*resume with: the same mpilearn "
        r"optimize command and --resume " + re.escape(str(run_dir)),
        output,
    ), output
    assert "mpilearn: error" not in output and "Traceback" not in output, output
    assert not _ranks_of(str(run_dir)), "a rank outlived the stopped search"
    before = {t.number: t for t in _study(run_dir).trials}
    kept = {n: t.value for n, t in before.items() if t.state is TrialState.COMPLETE}
    interrupted = {n for n, t in before.items() if t.user_attrs.get("interrupted")}
    assert kept and len(kept) < 6 and all(t.state is not TrialState.RUNNING for t in before.values()), before

    resume = [*args, "--resume"]
    stuck = run_cli([*resume, "--timeout", "5"], timeout=300, env={"MPILEARN_INJECT_FAULT": "hang@2:start"})
    print(f"search with block rank 2 stuck: exit {stuck.returncode} after {stuck.seconds:.1f}s")
    assert stuck.returncode != 0
    assert re.search(
        r"mpilearn: error on rank 0 \(coordinator\): .*rank 2\b.*stuck, stopped or has exited", stuck.output
    ), stuck.output
    assert stuck.output.count("mpilearn: error") == 1, stuck.output
    assert not _ranks_of(str(run_dir)), "a rank outlived the failed search"
    interrupted |= {t.number for t in _study(run_dir).trials if t.state is TrialState.RUNNING}

    result = run_cli(resume, timeout=300)
    assert result.returncode == 0, result.output
    trials = _study(run_dir).trials
    # --trials 6 results: an interrupted trial does not count (its point runs again as a new trial)
    results = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(results) == 6 and len(trials) == 6 + len(interrupted), [(t.number, t.state) for t in trials]
    assert [t.number for t in trials] == list(range(len(trials)))
    for number, value in kept.items():  # no finished trial lost or run again
        assert trials[number].state is TrialState.COMPLETE and trials[number].value == value
    for number in interrupted:  # marked failed (its point is queued again when trials remain)
        assert trials[number].state is TrialState.FAIL and trials[number].user_attrs["interrupted"] is True


def test_layout_errors_end_every_rank_once(data: Path, space_file: Path, tmp_path: Path) -> None:
    args = _search_args(
        data, tmp_path / "search", "--model", "mlp", "--space", str(space_file), "--trials", "2", "--block-size", "2"
    )
    before_launch = run_cli([*args, "-n", "4"], timeout=60)
    assert before_launch.returncode == 2
    assert "--block-size 2 does not divide the 3 training ranks" in before_launch.stderr
    under_mpi = run_mpi(4, [sys.executable, "-m", "mpilearn", *args], timeout=90)
    assert under_mpi.returncode != 0
    assert under_mpi.stderr.count("--block-size 2 does not divide the 3 training ranks") == 1, under_mpi.output


def test_print_config_shows_the_resolved_search_without_running_it(
    data: Path, space_file: Path, tmp_path: Path
) -> None:
    result = run_cli(
        _search_args(
            data,
            tmp_path / "search",
            "--model",
            "mlp",
            "--space",
            str(space_file),
            "-n",
            "7",
            "--block-size",
            "3",
            "--trials",
            "4",
            "--lr",
            "0.003",
            "--print-config",
        ),
        timeout=60,
    )
    assert result.returncode == 0, result.output
    resolved = json.loads(result.stdout)
    assert resolved["trials"] == 4 and resolved["block_size"] == 3
    assert resolved["run"]["model"]["spec"] == "mlp" and resolved["run"]["model"]["learning_rate"] == 0.003
    assert not (tmp_path / "search" / "study.db").exists()  # nothing ran
