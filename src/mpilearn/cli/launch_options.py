"""Options of self-launch (`-n N`): which mpiexec, on which hosts.

They belong to the launching process only: the relaunched ranks get the
command line without them.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from .. import env
from ..errors import ConfigError
from ..launch import Host, parse_hosts, read_hostfile

# Options that take a value and are removed from the ranks' command line.
LAUNCH_OPTIONS = ("-n", "--processes", "--mpiexec", "--hosts", "--hostfile")


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("launching (with -n)")
    group.add_argument(
        "--mpiexec",
        default=None,
        metavar="PATH",
        help=f"mpiexec to launch with (default: ${env.MPIEXEC}, else the one beside this Python, else PATH's)",
    )
    group.add_argument(
        "--hosts",
        default=None,
        metavar="H1:SLOTS,H2:SLOTS",
        help="run the ranks on these hosts through the launcher's remote start (ssh); -n defaults to the slots "
        "(default: none, this machine)",
    )
    group.add_argument(
        "--hostfile",
        default=None,
        metavar="FILE",
        help="hosts one a line, `host:slots` or `host slots=N`, instead of --hosts (default: none)",
    )


def launch_hosts(args: argparse.Namespace) -> tuple[Host, ...]:
    """The hosts of --hosts or --hostfile (empty: this machine)."""
    hosts_text, hostfile = getattr(args, "hosts", None), getattr(args, "hostfile", None)
    if hosts_text and hostfile:
        raise ConfigError("--hosts and --hostfile both list hosts: give one of them")
    if hosts_text:
        return parse_hosts(hosts_text)
    return read_hostfile(hostfile) if hostfile else ()


def processes_to_launch(args: argparse.Namespace, hosts: Sequence[Host]) -> int | None:
    """-n, else the slots of the hosts; refuses launch options under a launcher."""
    processes = getattr(args, "processes", None)
    if processes is not None and processes < 1:
        raise ConfigError(f"-n must be a positive integer, got {processes}")
    if (hosts or getattr(args, "mpiexec", None)) and env.under_mpi_launcher():
        raise ConfigError(
            "--hosts, --hostfile and --mpiexec apply to `-n N` self-launch; "
            "this process already runs under an MPI launcher"
        )
    return processes or (sum(host.slots for host in hosts) if hosts else None)


def without_launch_options(argv: Sequence[str]) -> list[str]:
    """The same arguments minus the launch options, for the relaunched ranks."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in LAUNCH_OPTIONS:
            skip = True
            continue
        if arg.startswith(tuple(f"{option}=" for option in LAUNCH_OPTIONS if option.startswith("--"))):
            continue
        if arg.startswith("-n") and arg[2:].isdigit():
            continue
        out.append(arg)
    return out
