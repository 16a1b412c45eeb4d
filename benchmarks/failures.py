"""The failure table: every failure and bad-input case of `mpilearn train`
and `mpilearn optimize`, run for real, with the time from the fault (or
signal) to the end of the job, the exit status and the message.

    python -m benchmarks.failures [--only NAME,...] [--skip-bad-input] [--out FILE]

Writes benchmarks/results/failures/failures.json and prints a Markdown table. Times
are measured, not asserted: on a loaded machine they grow with the start-up
(imports), so run it on a quiet one and read the load printed next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import common

TESTS = common.ROOT / "tests"
SPACE_TOML = (
    '[lr]\ntype = "float"\nlow = 1e-3\nhigh = 1e-2\nlog = true\n\n[units]\ntype = "int"\nlow = 8\nhigh = 32\nstep = 8\n'
)
LIMIT_S = 400.0  # one case at most (a hang that is never named shows as "not stopped")
MESSAGE = re.compile(r"^mpilearn: (?!injected|SIGTERM received|SIGINT received)|already finished|BAD TERMINATION")


class Watched:
    """A command whose merged output is timestamped line by line as it comes."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        full = dict(os.environ)
        full.pop("MPILEARN_LAUNCHED", None)
        full.update(env or {})
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full, cwd=cwd, start_new_session=True
        )
        self.lines: list[tuple[float, str]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_for(self, pattern: str, timeout: float = LIMIT_S) -> tuple[float, re.Match[str]]:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for when, line in self.lines[seen:]:
                seen += 1
                found = re.search(pattern, line)
                if found:
                    return when, found
            if self.process.poll() is not None and seen == len(self.lines) and not self.reader.is_alive():
                break
            time.sleep(0.02)
        raise RuntimeError(f"{pattern!r} never appeared:\n" + self.text()[-3000:])

    def finish(self, timeout: float = LIMIT_S) -> tuple[int | None, float]:
        try:
            status = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            status = None
        ended = time.monotonic()
        self.reader.join(timeout=10)
        return status, ended

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def message(self) -> str:
        lines = [line for _, line in self.lines if MESSAGE.search(line.strip())]
        errors = [line for line in lines if "mpilearn: error" in line]
        return (errors or lines or [""])[0].strip()[:300]


@dataclass
class Row:
    case: str
    what: str
    stop_s: float | None
    status: int | None
    message: str
    total_s: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)


def _mpilearn(*args: str) -> list[str]:
    return [sys.executable, "-m", "mpilearn", *args]


def _train(data: Path, run_dir: Path, *extra: str) -> list[str]:
    return _mpilearn(
        "train",
        "--model",
        "mlp",
        "--train",
        str(data / "train.txt"),
        "--val",
        str(data / "val.txt"),
        "--run-dir",
        str(run_dir),
        "--threads",
        "1",
        *extra,
    )


def _rank_pids(job: Watched) -> list[int]:
    _, found = job.wait_for(r"ranks: (.*)")
    return [int(pid) for pid in re.findall(r"pid (\d+)@", found.group(1))]


def _after(job: Watched, pattern: str, act: Callable[[], None]) -> tuple[float, int | None, float]:
    job.wait_for(pattern)
    acted = time.monotonic()
    act()
    status, ended = job.finish()
    return acted, status, ended


def _row(case: str, what: str, job: Watched, since: float | None, status: int | None, ended: float) -> Row:
    return Row(
        case,
        what,
        None if since is None or status is None else round(ended - since, 2),
        status,
        job.message(),
        round(ended - job.started, 1),
    )


def _fault(case: str, what: str, args: list[str], spec: str) -> Row:
    job = Watched(args, {"MPILEARN_INJECT_FAULT": spec})
    status, ended = job.finish()
    marks = [when for when, line in job.lines if "mpilearn: injected fault" in line]
    return _row(case, what, job, marks[0] if marks else None, status, ended)


def training_cases(data: Path, work: Path) -> list[tuple[str, Callable[[], Row]]]:
    def sigterm_launcher() -> Row:
        job = Watched(_train(data, work / "t1", "-n", "3", "--epochs", "40", "--batch", "8", "--checkpoint-every", "1"))
        acted, status, ended = _after(job, r"epoch 1/40", lambda: job.process.send_signal(signal.SIGTERM))
        return _row(
            "sigterm-launcher", "SIGTERM to the launcher (-n 3), checkpoints every epoch", job, acted, status, ended
        )

    def sigterm_worker() -> Row:
        job = Watched(_train(data, work / "t2", "-n", "3", "--epochs", "40", "--batch", "8", "--checkpoint-every", "5"))
        pids = _rank_pids(job)
        acted, status, ended = _after(job, r"epoch 1/40", lambda: os.kill(pids[2], signal.SIGTERM))
        return _row("sigterm-worker", "SIGTERM to worker rank 2, --checkpoint-every 5", job, acted, status, ended)

    def ctrl_c() -> Row:
        job = Watched(_train(data, work / "t3", "-n", "2", "--algo", "allreduce", "--epochs", "50", "--batch", "8"))
        acted, status, ended = _after(job, r"epoch 1/50", lambda: os.killpg(job.process.pid, signal.SIGINT))
        return _row(
            "ctrl-c", "SIGINT to the launcher's process group, allreduce, no checkpoints", job, acted, status, ended
        )

    def worker_killed() -> Row:
        job = Watched(_train(data, work / "t4", "-n", "3", "--epochs", "40", "--batch", "8"))
        pids = _rank_pids(job)
        acted, status, ended = _after(job, r"epoch 1/40", lambda: os.kill(pids[1], signal.SIGKILL))
        return _row("worker-killed", "SIGKILL to worker rank 1 mid-training", job, acted, status, ended)

    def worker_stopped() -> Row:
        job = Watched(_train(data, work / "t5", "-n", "3", "--epochs", "40", "--batch", "8", "--timeout", "3"))
        pids = _rank_pids(job)
        acted, status, ended = _after(job, r"epoch 1/40", lambda: os.kill(pids[1], signal.SIGSTOP))
        return _row("worker-stopped", "SIGSTOP to worker rank 1 mid-training, --timeout 3", job, acted, status, ended)

    def resume_finished() -> Row:
        first = Watched(_train(data, work / "t6", "-n", "3", "--epochs", "1", "--checkpoint-every", "1"))
        first.finish()
        job = Watched(_mpilearn("train", "--resume", str(work / "t6"), "-n", "3"))
        status, ended = job.finish()
        return _row("resume-finished", "--resume of a finished run (from the command)", job, job.started, status, ended)

    def resume_changed() -> Row:
        job = Watched(_mpilearn("train", "--resume", str(work / "t6"), "-n", "3", "--epochs", "2", "--batch", "16"))
        status, ended = job.finish()
        return _row(
            "resume-changed-option", "--resume with --batch changed (from the command)", job, job.started, status, ended
        )

    def fault(case: str, what: str, spec: str, *extra: str) -> tuple[str, Callable[[], Row]]:
        return case, lambda: _fault(case, what, _train(data, work / case, "-n", "3", "--epochs", "1", *extra), spec)

    return [
        ("sigterm-launcher", sigterm_launcher),
        ("sigterm-worker", sigterm_worker),
        ("ctrl-c", ctrl_c),
        ("worker-killed", worker_killed),
        ("worker-stopped", worker_stopped),
        fault("hang-at-start", "rank 1 SIGSTOPs at start-up, --timeout 5", "hang@1:start", "--timeout", "5"),
        fault("hang-at-start-default", "rank 1 SIGSTOPs at start-up, no --timeout", "hang@1:start"),
        fault("kill-at-start", "rank 1 SIGKILLs itself at start-up", "kill@1:start"),
        fault("exit-at-start", "rank 2 calls os._exit(0) at start-up", "exit@2:start"),
        fault("hang-at-end", "rank 2 SIGSTOPs after its loop, --timeout 5", "hang@2:end", "--timeout", "5"),
        fault("raise-mid-epoch", "worker rank 1 raises at its 5th batch", "raise@1:5"),
        fault("kill-mid-epoch", "worker rank 2 SIGKILLs itself at its 5th batch", "kill@2:5"),
        fault("nan-loss", "worker rank 1's 3rd batch is NaN", "nan@1:3"),
        ("resume-finished", resume_finished),
        ("resume-changed-option", resume_changed),  # the second needs the first
    ]


def search_cases(data: Path, work: Path) -> list[tuple[str, Callable[[], Row]]]:
    space = work / "space.toml"
    space.write_text(SPACE_TOML)

    def args(run_dir: Path, *extra: str) -> list[str]:
        return _mpilearn(
            "optimize",
            "--model",
            "mlp",
            "--train",
            str(data / "train.txt"),
            "--val",
            str(data / "val.txt"),
            "--threads",
            "1",
            "--run-dir",
            str(run_dir),
            "--space",
            str(space),
            "-n",
            "3",
            "--block-size",
            "1",
            "--trials",
            "6",
            "--epochs",
            "3",
            *extra,
        )

    def sigterm_search() -> Row:
        job = Watched(args(work / "s1"))
        acted, status, ended = _after(job, r"trial \d+ COMPLETE", lambda: job.process.send_signal(signal.SIGTERM))
        return _row(
            "search-sigterm", "optimize: SIGTERM to the launcher after the first trial", job, acted, status, ended
        )

    def resumed_search() -> Row:
        job = Watched(args(work / "s1", "--resume"))
        status, ended = job.finish()
        row = _row("search-resumed", "optimize --resume after the SIGTERM (whole run)", job, job.started, status, ended)
        import optuna  # the study's own reader

        study = optuna.load_study(study_name="mpilearn", storage=f"sqlite:///{work / 's1' / 'study.db'}")
        row.extra["states"] = [t.state.name for t in study.trials]
        return row

    def stuck_block() -> Row:
        return _fault(
            "search-block-stuck",
            "optimize: block rank 2 SIGSTOPs at its first trial, --timeout 5",
            args(work / "s2", "--timeout", "5"),
            "hang@2:start",
        )

    return [
        ("search-sigterm", sigterm_search),
        ("search-resumed", resumed_search),  # the second needs the first
        ("search-block-stuck", stuck_block),
    ]


def bad_input_cases(data: Path, work: Path) -> list[tuple[str, Callable[[], Row]]]:
    sys.path.insert(0, str(TESTS))
    import test_bad_input as bad  # the table of tests/test_bad_input.py, one source of truth

    def case(name: str, build: Callable[["bad.Ctx"], str]) -> Callable[[], Row]:
        def run() -> Row:
            tmp = work / "bad" / name
            shutil.copytree(data, tmp / "data")
            ctx = bad.Ctx(tmp=tmp, data=tmp / "data", run_dir=tmp / "run")
            ctx.options = bad._base_options(ctx)
            build(ctx)
            job = Watched(_mpilearn(*bad._argv(ctx.options)[0:]), cwd=tmp)
            status, ended = job.finish()
            return _row(f"bad-input: {name}", "bad input (whole run, 3 ranks)", job, job.started, status, ended)

        return run

    return [(f"bad-input: {name}", case(name, build)) for name, build, _ in bad.CASES]


def _table(rows: list[Row]) -> str:
    lines = ["| case | what | stop (s) | exit | message |", "|---|---|---|---|---|"]
    for row in rows:
        stop = "not stopped" if row.status is None else f"{row.stop_s:.1f}" if row.stop_s is not None else "-"
        message = row.message.replace("|", "\\|")
        lines.append(f"| {row.case} | {row.what} | {stop} | {row.status} | `{message}` |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.failures", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--skip-bad-input", action="store_true")
    parser.add_argument("--out", default=str(common.RESULTS / "failures" / "failures.json"))
    args = parser.parse_args(argv)
    load_before, started = common.load(), time.time()
    print(f"failures: load {' '.join(map(str, load_before))} on {common.cores()} cores", flush=True)
    with tempfile.TemporaryDirectory(prefix="mpilearn-failures-") as name:
        work = Path(name)
        data = work / "data"
        Watched(
            _mpilearn(
                "make-data",
                str(data),
                "--files",
                "4",
                "--val-files",
                "1",
                "--events-per-file",
                "256",
                "--shape",
                "8,8,8",
            )
        ).finish()
        small = work / "small"
        Watched(
            _mpilearn(
                "make-data",
                str(small),
                "--files",
                "4",
                "--val-files",
                "1",
                "--events-per-file",
                "64",
                "--shape",
                "8,8,8",
            )
        ).finish()
        cases = training_cases(data, work) + search_cases(data, work)
        if not args.skip_bad_input:
            cases += bad_input_cases(small, work)
        wanted = set(filter(None, args.only.split(",")))
        rows = []
        for case, run in cases:
            if wanted and not any(w in case for w in wanted):
                continue
            try:
                row = run()
            except RuntimeError as error:
                row = Row(case, "runner failed", None, None, str(error)[:300])
            print(f"{row.case}: stop {row.stop_s}s exit {row.status} (run {row.total_s}s): {row.message}", flush=True)
            rows.append(row)
    result = {
        "command": "python -m benchmarks.failures " + " ".join(argv or sys.argv[1:]),
        "date": common.now(),
        "duration_s": round(time.time() - started, 1),
        "machine": common.machine(),
        "load_before": load_before,
        "load_after": common.load(),
        "rows": [row.__dict__ for row in rows],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(_table(rows))
    print(f"load before {load_before}, after {result['load_after']}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
