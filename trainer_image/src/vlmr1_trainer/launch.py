"""The process contract shared by pods and local runs.

The operator gives every pod the torchrun environment (MASTER_ADDR, MASTER_PORT,
NNODES, NODE_RANK, NPROC_PER_NODE, WORLD_SIZE) and `vlmr1 run --nnodes N` gives every
local "node" process exactly the same. A node process with one training process trains
in place; with several it starts them through torchrun (torch.distributed.run), which
sets RANK/LOCAL_RANK per worker and tears the node down if one dies, so the operator's
gang restart sees a failed pod instead of a hung collective.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Variables of the contract, in the order the operator writes them.
CONTRACT = ("MASTER_ADDR", "MASTER_PORT", "NNODES", "NODE_RANK", "NPROC_PER_NODE", "WORLD_SIZE")


@dataclass(frozen=True)
class NodeEnv:
    """This node's place in the gang, read from the contract variables."""

    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    nnodes: int = 1
    node_rank: int = 0
    nproc_per_node: int = 1

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> NodeEnv:
        """The contract from the environment; a partial or inconsistent one is an error."""
        present = [k for k in CONTRACT if k in environ]
        if not present:
            return cls()
        missing = [k for k in CONTRACT if k not in environ]
        if missing:
            raise ValueError(f"incomplete launch environment: {', '.join(missing)} unset (set all of {CONTRACT})")
        try:
            env = cls(
                master_addr=environ["MASTER_ADDR"],
                master_port=int(environ["MASTER_PORT"]),
                nnodes=int(environ["NNODES"]),
                node_rank=int(environ["NODE_RANK"]),
                nproc_per_node=int(environ["NPROC_PER_NODE"]),
            )
        except ValueError as exc:
            raise ValueError(f"launch environment has a non-integer value: {exc}") from exc
        if int(environ["WORLD_SIZE"]) != env.world_size:
            raise ValueError(f"WORLD_SIZE={environ['WORLD_SIZE']} but NNODES x NPROC_PER_NODE = {env.world_size}")
        if not 0 <= env.node_rank < env.nnodes:
            raise ValueError(f"NODE_RANK={env.node_rank} is outside 0..{env.nnodes - 1}")
        return env

    def environ(self) -> dict[str, str]:
        """The contract variables for a child process."""
        return {
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
            "NNODES": str(self.nnodes),
            "NODE_RANK": str(self.node_rank),
            "NPROC_PER_NODE": str(self.nproc_per_node),
            "WORLD_SIZE": str(self.world_size),
        }

    def single_process_environ(self) -> dict[str, str]:
        """RANK/LOCAL_RANK for a node that trains in place (one process per node)."""
        return {"RANK": str(self.node_rank), "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}


def is_worker(environ: Mapping[str, str]) -> bool:
    """Whether this process is a training worker (torchrun or a single-process node set RANK)."""
    return "RANK" in environ and "LOCAL_RANK" in environ


def torchrun_argv(node: NodeEnv, module_args: Sequence[str]) -> list[str]:
    """torch.distributed.run for this node's workers, each running the entry point again."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={node.nnodes}",
        f"--node-rank={node.node_rank}",
        f"--nproc-per-node={node.nproc_per_node}",
        f"--master-addr={node.master_addr}",
        f"--master-port={node.master_port}",
        "-m",
        "vlmr1_trainer",
        *module_args,
    ]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_local_nodes(
    nnodes: int, nproc_per_node: int, module_args: Sequence[str], log_dir: Path, environ: Mapping[str, str]
) -> list[subprocess.Popen[bytes]]:
    """Start `nnodes` node processes on this machine with the pods' contract.

    Node 0's output goes to this terminal; the others' to log_dir/node-<i>.log.
    """
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for rank in range(nnodes):
        node = NodeEnv("127.0.0.1", port, nnodes, rank, nproc_per_node)
        env = {**environ, **node.environ()}
        env.pop("RANK", None)
        env.pop("LOCAL_RANK", None)
        argv = [sys.executable, "-m", "vlmr1_trainer", *module_args]
        if rank == 0:
            procs.append(subprocess.Popen(argv, env=env))
        else:
            with (log_dir / f"node-{rank}.log").open("wb") as log:
                procs.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def wait_all(procs: Sequence[subprocess.Popen[bytes]]) -> int:
    """Wait for every node; the first non-zero exit code wins (and stops the others)."""
    code = 0
    for proc in procs:
        rc = proc.wait()
        if rc != 0 and code == 0:
            code = rc
            for other in procs:
                if other.poll() is None:
                    other.terminate()
    return code


def current_environ() -> dict[str, str]:
    return dict(os.environ)
