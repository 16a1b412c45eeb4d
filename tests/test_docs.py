"""The guide stays true: its command-line reference is the `--help` of this
version, every `mpilearn` command in the README and the guide parses with
the real parser, the README's `fit` script trains as written, and
`mkdocs build --strict` passes (when mkdocs is installed: make test)."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest
from conftest import SMALL_SHAPE, make_data, run_command, run_mpi

ROOT = Path(__file__).resolve().parents[1]
CLI_PAGE = ROOT / "docs" / "cli.md"
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p != CLI_PAGE)]


def cli_reference() -> str:
    """docs/cli.md: every command's --help, at a fixed width."""
    os.environ["COLUMNS"] = "100"
    from mpilearn.cli.main import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")  # noqa: SLF001
    out = ["# Command line", "", "Generated from `--help` by `python tests/test_docs.py` (a test checks it is current).", ""]
    out += ["## mpilearn", "", "```", parser.format_help().rstrip(), "```", ""]
    for name, sub in commands.choices.items():  # type: ignore[union-attr]
        out += [f"## mpilearn {name}", "", "```", sub.format_help().rstrip(), "```", ""]
    return "\n".join(out)


def test_cli_reference_is_generated_from_help() -> None:
    assert CLI_PAGE.read_text() == cli_reference(), "docs/cli.md is stale: run `python tests/test_docs.py`"


def _commands() -> list[tuple[str, list[str]]]:
    """Every `mpilearn ...` line of a code block, as arguments (placeholders and `...` left out)."""
    found = []
    for page in PAGES:
        for block in re.findall(r"```[a-z]*\n(.*?)```", page.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split("  #")[0].strip()
                match = re.search(r"(?:^|\s)(?:\S*/)?mpilearn (\w[\w-]*.*)$", line)
                if not match or "..." in line or "<" in line or line.startswith(("#", "ls ")):
                    continue
                found.append((f"{page.name}: {line}", shlex.split(match.group(1))))
    return found


def test_every_command_of_the_guide_parses() -> None:
    from mpilearn.cli.main import build_parser

    commands = _commands()
    assert len(commands) >= 10
    for where, argv in commands:
        if argv[0] == "bench":
            continue  # its arguments belong to python -m benchmarks
        try:
            build_parser().parse_args(argv)
        except SystemExit as exit:
            pytest.fail(f"{where}: does not parse (exit {exit.code})")


@pytest.mark.timeout(900)  # 3 Keras ranks on a loaded 2-core machine
def test_the_readme_fit_script_trains_as_written(tmp_path: Path) -> None:
    script = re.search(r"```python\n(# train.py.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert script, "README: the fit script is gone"
    (tmp_path / "train.py").write_text(script.group(1))
    make_data(tmp_path / "data" / "demo", files=2, shape=SMALL_SHAPE)
    result = run_mpi(3, [sys.executable, "train.py"], timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.output
    assert "writing to runs/" in result.output and "[" in result.stdout


@pytest.mark.skipif(shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None, reason="mkdocs not installed")
def test_mkdocs_builds_strict(tmp_path: Path) -> None:
    mkdocs = str(Path(sys.executable).parent / "mkdocs")
    result = run_command([mkdocs, "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")], timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.output


if __name__ == "__main__":
    CLI_PAGE.write_text(cli_reference())
    print(f"wrote {CLI_PAGE}")
