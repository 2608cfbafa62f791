"""A real two-node Ray cluster on this machine, started the way a user starts one.

``ray start --head`` plus a second ``ray start --address=...`` node, each with one CPU, from
the interpreter's own ``ray`` script, on free ports and in a private temporary directory so
nothing collides with another Ray on the machine. Each ``ray start --block`` runs in its own
process group; stopping the cluster signals exactly those groups (``ray stop`` would stop
every Ray of the user on the machine).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_script() -> str:
    return str(Path(sys.executable).with_name("ray"))


def _node_ports() -> list[str]:
    low = free_port()
    return [
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--min-worker-port={low}",
        f"--max-worker-port={low + 40}",
        "--num-cpus=1",
        "--object-store-memory=100000000",
        "--disable-usage-stats",
        "--block",
    ]


@dataclass
class Cluster:
    """A running cluster: its address, its temp dir and the ``ray start`` processes."""

    address: str
    temp_dir: str
    procs: list[subprocess.Popen] = field(default_factory=list)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):  # what of the group is still there
                os.killpg(proc.pid, signal.SIGKILL)


def _wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Ray head did not open port {port}") from None
            time.sleep(0.3)


def wait_for_nodes(ray: object, nodes: int, timeout: float = 120) -> None:
    """Block until ``nodes`` nodes are alive in the cluster ``ray`` is connected to."""
    deadline = time.monotonic() + timeout
    while len([n for n in ray.nodes() if n["Alive"]]) < nodes:  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {nodes} Ray nodes joined")
        time.sleep(0.3)


def start_cluster(nodes: int = 2, timeout: float = 180) -> Cluster:
    """Start a head node and ``nodes - 1`` more (see :func:`wait_for_nodes`)."""
    temp_dir = tempfile.mkdtemp(prefix="cfr")  # short: Ray's socket paths have a length limit
    env = dict(os.environ)
    # cluster workers import cfdb (and these tests' functions) like the driver
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.pop("RAY_ADDRESS", None)
    # Ray >= 2.5x turns token authentication on for `ray start --head` but not for the nodes
    # and drivers that join it; a private test cluster opts out, as Ray's warning says to
    env["RAY_AUTH_MODE"] = "disabled"
    port = free_port()
    address = f"127.0.0.1:{port}"
    log = open(Path(temp_dir) / "start.log", "ab")  # noqa: SIM115  (kept open for the processes)
    cluster = Cluster(address, temp_dir)
    head = [
        _ray_script(),
        "start",
        "--head",
        f"--port={port}",
        f"--temp-dir={temp_dir}",
        f"--dashboard-port={free_port()}",
        "--include-dashboard=false",
        *_node_ports(),
    ]
    try:
        cluster.procs.append(
            subprocess.Popen(head, env=env, stdout=log, stderr=log, start_new_session=True)
        )
        _wait_for_port(port, timeout)
        for _ in range(nodes - 1):
            node = [_ray_script(), "start", f"--address={address}", *_node_ports()]
            cluster.procs.append(
                subprocess.Popen(node, env=env, stdout=log, stderr=log, start_new_session=True)
            )
    except BaseException:
        cluster.stop()
        raise
    return cluster
