"""`mpilearn info`: versions of everything that matters, and the rank layout
a given number of processes would get."""

from __future__ import annotations

import argparse
import platform
import sys
from typing import Any

from .. import __version__, env
from ..algorithms import registry
from ..errors import ConfigError, MpilearnError

# Rank lines printed before the layout is abbreviated.
MAX_RANK_LINES = 16


def add_info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n",
        "--processes",
        type=int,
        default=None,
        help="show the layout for N processes (default: the ranks of this job, under a launcher)",
    )
    parser.add_argument(
        "--algo", default=registry.DEFAULT, choices=registry.names(), help="training algorithm of the layout"
    )
    parser.add_argument("--masters", type=int, default=1, help="masters of the layout (M >= 2: a tree)")
    parser.add_argument("--servers", type=int, default=1, help="sharded parameter servers of the layout")
    parser.add_argument(
        "--backend", default=None, choices=("torch", "jax", "tensorflow"), help="Keras backend to report"
    )
    parser.add_argument(
        "--mpiexec",
        default=None,
        metavar="PATH",
        help=f"report this mpiexec for -n (default: ${env.MPIEXEC}, else the one beside this Python, else PATH's)",
    )


def _package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def layout_lines(processes: int, algo: str, masters: int, servers: int = 1) -> list[str]:
    """The topology's description and one line per rank (abbreviated past MAX_RANK_LINES)."""
    from ..comm.topology import Role, Topology

    topology = Topology(processes, masters, peers_only=not registry.spec_of(algo).has_master, servers=servers)
    lines = [topology.describe()]
    shown = list(range(processes)) if processes <= MAX_RANK_LINES else list(range(MAX_RANK_LINES - 2)) + [processes - 1]
    for rank in shown:
        role = topology.role(rank)
        text = f"  rank {rank:<5d} {role.value}"
        if role is Role.WORKER and servers > 1:
            text += f" -> ranks {topology.server_ranks[0]}-{topology.server_ranks[-1]}"
        elif role is Role.WORKER or role is Role.SUBMASTER:
            text += f" -> rank {topology.parent(rank)}"
        if role in (Role.MASTER, Role.SUBMASTER, Role.SERVER):
            text += f" serves {len(topology.children(rank))}"
        if servers > 1 and role in (Role.MASTER, Role.SERVER):
            text += f", slice {rank + 1} of {servers} of the weights"
        if rank == processes - 1 and processes > MAX_RANK_LINES:
            lines.append(f"  ... ({processes - MAX_RANK_LINES + 1} more ranks)")
        lines.append(text)
    return lines


def info(args: argparse.Namespace) -> int:
    env.select_keras_backend(args.backend)
    from ..comm import world
    from ..comm.versions import mpi_versions

    if args.processes is not None and args.processes < 1:
        raise ConfigError(f"-n must be a positive integer, got {args.processes}")
    mpi = mpi_versions()
    comm = world()
    placement = _placement(comm, args.algo)  # collective
    if comm.rank != 0:
        return 0
    from ..backends.versions import backend_version

    backend, backend_v = backend_version()
    import keras

    rows: list[tuple[str, Any]] = [
        ("mpilearn", __version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("MPI library", mpi["mpi_library"]),
        ("MPI standard", mpi["mpi_standard"]),
        ("mpi4py", mpi["mpi4py"]),
        ("keras", keras.__version__),
        ("backend", f"{backend} {backend_v}"),
        ("numpy", _package_version("numpy")),
        ("h5py", _package_version("h5py")),
        ("host", f"{platform.node()}: {env.default_threads(1)} cores usable"),
        ("started by", _started_by()),
        ("-n launches", _launcher(args.mpiexec, mpi["mpi_library"])),
    ]
    for name, value in rows:
        print(f"{name:13s} {value}")
    from ..optional import extras_lines

    print()
    print("extras (pip install 'mpilearn[NAME]'):")
    for line in extras_lines():
        print(f"  {line}")
    processes = args.processes or comm.size
    print()
    print(
        f"layout of {processes} process{'es' if processes > 1 else ''} (--algo {args.algo}, --masters {args.masters}, "
        f"--servers {args.servers}):"
    )
    for line in layout_lines(processes, args.algo, args.masters, args.servers):
        print(f"  {line}")
    per_node = comm.local_size if args.processes is None else processes
    print(
        f"  compute threads per rank: {env.default_threads(per_node)} (cores of this node / {per_node} rank{'s' if per_node != 1 else ''} on it; --threads overrides)"
    )
    if args.processes is None and comm.size == 1:
        print("  (give -n N for the layout of N processes)")
    if placement:
        print()
        print("ranks of this job (host, local rank, compute threads, GPU by local rank):")
        for rank, (host, local_rank, local_size, threads, gpu) in enumerate(placement[:MAX_RANK_LINES]):
            print(
                f"  rank {rank:<5d} {host} local {local_rank}/{local_size}  threads {threads}  gpu {'cpu' if gpu is None else gpu}"
            )
    print()
    print("algorithms (--algo):")
    for line in registry.describe():
        print(f"  {line}")
    return 0


def _started_by() -> str:
    announced = env.launcher_size()
    if announced is not None:
        processes, variable, launcher = announced
        return f"{launcher}, {variable}={processes}"
    return "no launcher (a single process)"


def _launcher(mpiexec: str | None, library: str) -> str:
    """The mpiexec `-n N` would run, its MPI, and a warning when that is not
    the MPI mpi4py loaded (its ranks would each see a world of 1)."""
    from ..launch import compatible, detect, find_mpiexec, implementation_of_library

    try:
        launcher = detect(find_mpiexec(mpiexec))
    except MpilearnError as error:
        return f"nothing ({error})"
    text = launcher.describe()
    loaded = implementation_of_library(library)
    if not compatible(launcher.implementation, loaded):
        text += f"  WARNING: mpi4py loaded {loaded}: the ranks of this mpiexec would each see a world of 1"
    return text


def _placement(comm: Any, algo: str) -> list[tuple[str, int, int, int, int | None]]:
    """Collective: (host, local rank, ranks on the node, compute threads, GPU)
    of every rank, as training would set them up; empty for one process."""
    if comm.size == 1:
        return []
    from ..placement import count_gpus, gpu_for_world_rank

    gpu = gpu_for_world_rank(
        comm.rank,
        comm.local_rank,
        comm.local_size,
        comm.node_ranks,
        count_gpus(),
        registry.spec_of(algo).has_master,
        False,
    )
    mine = (platform.node(), comm.local_rank, comm.local_size, env.default_threads(comm.local_size), gpu)
    return list(comm.gather_object(mine) or [])
