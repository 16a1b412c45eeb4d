"""Two hosts emulated on this machine, for multi-host runs: each a network
namespace with its own address (a veth pair joins them), its own hostname
(a UTS namespace), its own /etc/hosts naming both, and its own node-local
disk mounted at one shared path (a mount namespace). An `ssh` stand-in
runs a command "on" a host by entering that host's namespaces, so hydra's
ssh launcher (HYDRA_LAUNCHER_EXEC) starts its proxies on the right host.

Only addresses inside the namespaces made here are used (10.231.N.1-2/24).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

SUBNET_PREFIX = "10.231"


@dataclass
class EmulatedHost:
    name: str
    namespace: str
    address: str
    disk: Path
    enter: Path  # `enter CMD...` runs CMD on this host


@dataclass
class TwoHosts:
    root: Path
    node_local: Path  # the same path on both hosts, a different disk on each
    ssh: Path
    hosts: list[EmulatedHost] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """What makes hydra's mpiexec start remote proxies through the stand-in."""
        return {"HYDRA_LAUNCHER": "ssh", "HYDRA_LAUNCHER_EXEC": str(self.ssh)}

    def on(self, index: int, argv: list[str]) -> list[str]:
        return [str(self.hosts[index].enter), *argv]


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)


def why_not() -> str | None:
    """Why two hosts cannot be emulated here (None: they can)."""
    if os.geteuid() != 0:
        return "emulating hosts needs root (network, UTS and mount namespaces)"
    for tool in ("ip", "unshare", "mount", "hostname"):
        if not shutil.which(tool):
            return f"emulating hosts needs `{tool}`"
    probe = f"mplprobe{os.getpid() % 100000}"
    try:
        _run("ip", "netns", "add", probe)
        _run("ip", "netns", "exec", probe, "unshare", "--uts", "--mount", "true")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        return f"network namespaces are not allowed here ({getattr(exc, 'stderr', '') or exc})".strip()
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30)
    return None


def create(root: Path) -> TwoHosts:
    """Make the two hosts; call `destroy` afterwards, also after a failure."""
    tag = os.getpid() % 100000
    subnet = f"{SUBNET_PREFIX}.{tag % 250 + 1}"
    node_local = root / "node-local"
    node_local.mkdir()
    hosts_file = root / "hosts"
    names = [f"mpl-host{i}" for i in (1, 2)]
    hosts_file.write_text("127.0.0.1 localhost\n" + "".join(f"{subnet}.{i} {n}\n" for i, n in enumerate(names, 1)))
    setup = TwoHosts(root, node_local, root / "ssh")
    for i, name in enumerate(names, 1):
        disk = root / f"disk-{name}"
        disk.mkdir()
        namespace = f"mpl{tag}h{i}"
        inside = root / f"inside-{name}"
        inside.write_text(
            "#!/bin/sh\n"
            f"hostname {name} && mount --bind {shlex.quote(str(hosts_file))} /etc/hosts"
            f" && mount --bind {shlex.quote(str(disk))} {shlex.quote(str(node_local))} || exit 1\n"
            'exec "$@"\n'
        )
        enter = root / f"enter-{name}"
        enter.write_text(
            f'#!/bin/sh\nexec ip netns exec {namespace} unshare --uts --mount -- {shlex.quote(str(inside))} "$@"\n'
        )
        for script in (inside, enter):
            script.chmod(0o755)
        setup.hosts.append(EmulatedHost(name, namespace, f"{subnet}.{i}", disk, enter))
    cases = "".join(f'  {h.name}) exec {shlex.quote(str(h.enter))} sh -c "$*" ;;\n' for h in setup.hosts)
    setup.ssh.write_text(
        "#!/bin/sh\n# ssh stand-in: ssh [OPTIONS] HOST COMMAND... runs COMMAND in HOST's namespaces\n"
        'while [ "${1#-}" != "$1" ]; do shift; done\n'
        "host=$1; shift\n"
        f'case "$host" in\n{cases}esac\n'
        'echo "ssh: $host: no such emulated host" >&2; exit 255\n'
    )
    setup.ssh.chmod(0o755)
    try:
        a, b = setup.hosts
        veth_a, veth_b = f"mpl{tag}va", f"mpl{tag}vb"
        for host in setup.hosts:
            _run("ip", "netns", "add", host.namespace)
        _run("ip", "link", "add", veth_a, "type", "veth", "peer", "name", veth_b)
        for host, veth in ((a, veth_a), (b, veth_b)):
            _run("ip", "link", "set", veth, "netns", host.namespace)
            _run("ip", "-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", veth)
            _run("ip", "-n", host.namespace, "link", "set", veth, "up")
            _run("ip", "-n", host.namespace, "link", "set", "lo", "up")
    except BaseException:
        destroy(setup)
        raise
    return setup


def destroy(setup: TwoHosts) -> None:
    """End every process left on the hosts and delete their namespaces (the veth goes with them)."""
    for host in setup.hosts:
        pids = subprocess.run(
            ["ip", "netns", "pids", host.namespace], capture_output=True, text=True, timeout=30
        ).stdout
        for pid in pids.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True, timeout=30)
