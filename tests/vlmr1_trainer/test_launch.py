"""The torchrun environment contract the operator writes into pods, as the trainer reads it."""

from __future__ import annotations

import sys

import pytest

from vlmr1_trainer.launch import NodeEnv, is_worker, torchrun_argv

POD = {
    "MASTER_ADDR": "job-node-0.ns.svc",
    "MASTER_PORT": "29500",
    "NNODES": "2",
    "NODE_RANK": "1",
    "NPROC_PER_NODE": "8",
    "WORLD_SIZE": "16",
}


def test_pod_environment_round_trips() -> None:
    node = NodeEnv.from_environ(POD)
    assert node == NodeEnv("job-node-0.ns.svc", 29500, 2, 1, 8)
    assert node.world_size == 16
    assert node.environ() == POD


def test_no_contract_means_a_single_local_process() -> None:
    assert NodeEnv.from_environ({}) == NodeEnv()
    assert NodeEnv().world_size == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"NNODES": None}, "NNODES unset"),
        ({"WORLD_SIZE": "15"}, "WORLD_SIZE=15 but NNODES x NPROC_PER_NODE = 16"),
        ({"NODE_RANK": "2"}, "NODE_RANK=2 is outside 0..1"),
        ({"MASTER_PORT": "http"}, "non-integer"),
    ],
)
def test_bad_contract_is_an_error(change: dict[str, str | None], message: str) -> None:
    env = {k: v for k, v in {**POD, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        NodeEnv.from_environ(env)


def test_torchrun_runs_the_entry_point_once_per_process() -> None:
    argv = torchrun_argv(NodeEnv.from_environ(POD), ["--config", "/etc/vlmr1/config.yaml"])
    assert argv[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nnodes=2" in argv and "--node-rank=1" in argv and "--nproc-per-node=8" in argv
    assert "--master-addr=job-node-0.ns.svc" in argv and "--master-port=29500" in argv
    assert argv[-4:] == ["-m", "vlmr1_trainer", "--config", "/etc/vlmr1/config.yaml"]


def test_single_process_node_sets_its_rank() -> None:
    node = NodeEnv.from_environ({**POD, "NPROC_PER_NODE": "1", "WORLD_SIZE": "2"})
    env = node.single_process_environ()
    assert env == {"RANK": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}
    assert is_worker(env) and not is_worker(POD)
