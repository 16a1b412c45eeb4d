"""The package as users get it: `python -m build` makes a wheel and an sdist;
the wheel, installed (not editable) into a venv that has only the core and
torch (`make core-venv`, cached in .venv-core), trains a 2-rank job from
outside the checkout, and the features whose extras are missing say which
extra to install."""
from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import SMALL_SHAPE, run_command

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / ".venv-core"
# Must not be in the core venv: each is an extra's.
NOT_IN_CORE = ("optuna", "matplotlib", "psutil", "scipy", "jax", "tensorflow", "yaml", "tensorboard")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the build backend of this venv, no download.
    result = run_command([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)], timeout=300)
    assert result.returncode == 0, result.output
    wheel, = out.glob("mpilearn-*.whl")
    sdist, = out.glob("mpilearn-*.tar.gz")
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
    assert sorted(r.split()[1].split(">")[0].split(";")[0] for r in core) == ["h5py", "keras", "mpi4py", "numpy", "tomli", "tqdm"]
    for extra in ("torch", "jax", "tensorflow", "hpo", "report", "monitor", "mpich", "openmpi", "all"):
        assert f"Provides-Extra: {extra}" in metadata
    assert "Classifier: Topic :: System :: Distributed Computing" in metadata and "Project-URL: Changelog" in metadata
    with tarfile.open(built["sdist"]) as sdist:
        assert any(n.endswith("/src/mpilearn/api.py") for n in sdist.getnames())


@pytest.fixture(scope="module")
def core_venv(built: dict[str, Path]) -> Path:
    if not (CORE / ".installed").is_file():
        pytest.skip("no .venv-core: `make core-venv` makes it (make test does)")
    python = CORE / "bin" / "python"
    result = run_command([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall",
                          str(built["wheel"])], timeout=300)
    assert result.returncode == 0, result.output
    return CORE / "bin"


@pytest.mark.timeout(1200)  # several fresh processes and a 2-rank job
def test_the_wheel_trains_two_ranks_in_a_core_venv_outside_the_checkout(core_venv: Path, tmp_path: Path) -> None:
    python = str(core_venv / "python")
    where = subprocess.run([python, "-c", "import mpilearn, sys; print(mpilearn.__file__)"], capture_output=True,
                           text=True, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, timeout=120)
    assert "site-packages" in where.stdout and str(ROOT / "src") not in where.stdout, where
    listed = subprocess.run([python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, timeout=120)
    installed = {line.split("==")[0].lower() for line in listed.stdout.splitlines()}
    assert "torch" in installed and not installed & {"optuna", "matplotlib", "psutil", "jax", "tensorflow", "pyyaml"}
    mpilearn = str(core_venv / "mpilearn")
    env = {"KERAS_BACKEND": "", "PYTHONPATH": "", "KERAS_HOME": str(tmp_path)}  # the first installed backend: torch
    made = run_command([mpilearn, "make-data", "data", "--files", "2", "--events-per-file", "64", "--shape", SMALL_SHAPE],
                       timeout=120, cwd=tmp_path, env=env)
    assert made.returncode == 0, made.output
    result = run_command([mpilearn, "train", "--model", "mlp", "--train", "data/train.txt", "--val", "data/val.txt",
                          "--epochs", "1", "--batch", "32", "-n", "2", "--run-dir", "run"], timeout=300, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.output
    assert (tmp_path / "run" / "model.keras").is_file() and "val_accuracy" in result.output
    assert "tensorflow" not in result.stderr.lower()
    info = run_command([mpilearn, "info"], timeout=120, cwd=tmp_path, env=env)
    assert "backend       torch" in info.stdout and "[hpo] mpilearn optimize: not installed: pip install 'mpilearn[hpo]'" in info.stdout
    # Features whose extra is missing: one line naming it, exit 2.
    for argv, extra in ((["report", "run"], "report"), (["optimize", "--model", "mlp", "--train", "data/train.txt"], "hpo"),
                        (["train", "--model", "mlp", "--train", "data/train.txt", "--monitor"], "monitor"),
                        (["train", "--model", "mlp", "--train", "data/train.txt", "--backend", "jax"], "jax")):
        missing = run_command([mpilearn, *argv], timeout=120, cwd=tmp_path, env=env)
        assert missing.returncode == 2 and f"pip install 'mpilearn[{extra}]'" in missing.stderr, (argv, missing.output)
        assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    bench = run_command([mpilearn, "bench", "overhead"], timeout=60, cwd=tmp_path, env=env)
    assert bench.returncode == 2 and "source checkout" in bench.stderr
