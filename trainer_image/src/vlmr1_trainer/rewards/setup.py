"""A job's rewards from its spec: built, checked before the first step, and bounded for training.

Order, cheapest first (see :mod:`vlmr1_trainer.preflight`): the job's reward code goes on the
import path; every built-in name is looked up; every reward is built (references imported,
classes instantiated with params, remote rewards given their token); then, once the data is
loaded, references and remote rewards score a **probe batch** — the first samples' answer turns
and an empty completion — so a wrong count, a non-number, an exception or an endpoint that is
down is an error naming the reward before any weights load, not a crash at step one.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlmr1_core.config import TrainerConfig
from vlmr1_core.errors import UserError
from vlmr1_core.reward_config import REWARD_CODE_MOUNT, RewardCodeSpec, RewardSpec, reward_name_problem
from vlmr1_core.uri import resolve_local_path

if TYPE_CHECKING:
    from vlmr1_trainer.data import Sample
    from vlmr1_trainer.rewards.pool import WorkerPool
    from vlmr1_trainer.rewards.registry import Reward
    from vlmr1_trainer.rewards.remote import RemoteReward

    JobReward = Reward | RemoteReward

__all__ = ["add_reward_code", "build_rewards", "probe_rewards", "scored_rewards"]

logger = logging.getLogger(__name__)
PROBE_SAMPLES = 2


def reward_code_folder(spec: RewardCodeSpec) -> Path:
    """Where the job's reward code is in this process: the ConfigMap's mount, or the uri's folder."""
    if spec.config_map is not None:
        return Path(REWARD_CODE_MOUNT)
    assert spec.uri is not None  # one of the two, by the spec's rule
    return resolve_local_path(spec.uri)


def add_reward_code(config: TrainerConfig) -> Path | None:
    """Put the job's reward code first on the import path (and so in every scoring worker's)."""
    if config.reward_code is None:
        return None
    folder = reward_code_folder(config.reward_code)
    if not folder.is_dir():
        where = (
            f"ConfigMap {config.reward_code.config_map} is not mounted at {folder}"
            if config.reward_code.config_map
            else f"{folder} is not a folder"
        )
        raise UserError(
            f"reward code: {where}",
            field="spec.rewardCode",
            fix="a ConfigMap is mounted only in the operator's pods; for `vlmr1 run` use rewardCode.uri: ./folder",
        )
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return folder


def build_rewards(config: TrainerConfig) -> list[JobReward]:
    """Every reward of the spec built, in order; a UserError naming the spec field otherwise."""
    from vlmr1_trainer.rewards.reference import ReferenceParamsError, RewardReferenceError
    from vlmr1_trainer.rewards.registry import available, build
    from vlmr1_trainer.rewards.remote import RemoteReward

    add_reward_code(config)
    known = available()
    for i, spec in enumerate(config.rewards):
        problem = reward_name_problem(spec.name, known) if spec.kind == "builtin" else None
        if problem is not None:
            raise UserError(problem, field=f"spec.rewards[{i}].name")
    rewards: list[JobReward] = []
    for i, spec in enumerate(config.rewards):
        field = f"spec.rewards[{i}]"
        try:
            if spec.remote is not None:
                rewards.append(RemoteReward(spec.name, spec.remote, spec.params))
            else:
                rewards.append(build(spec.name, **spec.params))
        except ReferenceParamsError as exc:
            exc.at(field=f"{field}.params")
            raise
        except RewardReferenceError as exc:
            exc.at(field=f"{field}.name")
            raise
        except UserError as exc:
            exc.at(field=field)
            raise
        except ValueError as exc:  # an unknown parameter, or a value the reward refuses
            raise UserError(str(exc), field=f"{field}.params") from exc
    return rewards


def probe_batch(samples: Sequence[Sample]) -> tuple[list[str], list[dict[str, Any]]]:
    """The probe batch: the first samples' answer turns and an empty completion, with each
    one's columns as training passes them (images aside)."""
    chosen = [*samples[:PROBE_SAMPLES], samples[0]]
    completions = [s.target for s in chosen[:-1]] + [""]
    columns = [
        {
            "problem": s.problem,
            "solution": s.solution,
            "accu_reward_method": s.accu_reward_method,
            "image_size": list(s.image_size) if s.image_size else None,
            **s.extra,
        }
        for s in chosen
    ]
    return completions, columns


def probe_rewards(
    rewards: Sequence[JobReward], specs: Sequence[RewardSpec], samples: Sequence[Sample], budget: float = 1.0
) -> None:
    """References and remote rewards score the probe batch; a broken contract is a UserError.

    A reference's probe runs under its time budget for the whole batch: one that runs over it
    has told nothing about its contract, so that is a warning (training bounds every completion).
    """
    from vlmr1_trainer.rewards.reference import ReferenceReward, RewardContractError, probe
    from vlmr1_trainer.rewards.remote import RemoteReward, RemoteRewardError
    from vlmr1_trainer.rewards.scoring import time_limit

    if not samples:
        return
    completions, columns = probe_batch(samples)
    names = sorted({k for c in columns for k in c})
    for i, (reward, spec) in enumerate(zip(rewards, specs, strict=True)):
        field = f"spec.rewards[{i}]"
        if isinstance(reward, RemoteReward):
            try:
                reward.request(completions, {k: [c.get(k) for c in columns] for k in names})
            except RemoteRewardError as exc:
                if spec.remote is not None and spec.remote.on_failure == "zero":
                    logger.warning("%s (probe batch before training; onFailure: zero, so training goes on)", exc)
                    continue
                raise UserError(
                    f"{exc} (probe batch before training)",
                    field=f"{field}.remote.url",
                    fix="start the endpoint or correct the url; onFailure: zero trains on with 0.0 scores",
                ) from None
        elif isinstance(reward, ReferenceReward):
            missing = [c for c in reward.required if c not in names]
            if missing:
                raise UserError(
                    f"reward {reward.name} reads column(s) {', '.join(missing)} that the data does not have "
                    f"(columns: {', '.join(names)})",
                    field=f"{field}.name",
                    fix="add the field to every data line, or give the parameter a default",
                )
            seconds = (spec.timeout_seconds or budget) * (len(completions) + 1)
            try:
                with time_limit(seconds):
                    probe(reward, completions, columns)
            except TimeoutError:
                logger.warning(
                    "reward %s: the probe batch took over %g s; its answers are checked as it scores",
                    reward.name,
                    seconds,
                )
            except RewardContractError as exc:
                raise UserError(f"{exc} (probe batch before training)", field=f"{field}.name") from None
            except Exception as exc:
                raise UserError(
                    f"reward {reward.name} raised on the probe batch (the first samples' answers and an empty "
                    f"completion): {type(exc).__name__}: {exc}",
                    field=f"{field}.name",
                    fix="a reward returns 0.0 for a malformed completion and None for a malformed ground truth",
                ) from None


def scored_rewards(
    rewards: Sequence[JobReward], config: TrainerConfig, processes_per_node: int
) -> tuple[list[Any], WorkerPool | None]:
    """The rewards as TRL calls them during training: bounded, the CPU-heavy ones sharing one
    pool of worker processes (started here, once; the caller closes it at the end of the run)."""
    from vlmr1_trainer.rewards.pool import WorkerPool, default_workers
    from vlmr1_trainer.rewards.registry import Reward
    from vlmr1_trainer.rewards.remote import RemoteReward
    from vlmr1_trainer.rewards.scoring import ScoredReward
    from vlmr1_trainer.vlm.registry import get_family

    # What the chat template wrote at the start of the model's turn is part of its answer.
    prefix = get_family(config.model.resolved_family).completion_prefix

    heavy = {
        i: (spec.name, spec.params)
        for i, (reward, spec) in enumerate(zip(rewards, config.rewards, strict=True))
        if isinstance(reward, Reward) and reward.cpu_bound
    }
    pool = None
    if heavy:
        workers = config.scoring.workers or default_workers(processes_per_node)
        pool = WorkerPool(heavy, workers)
        pool.start()
        logger.info("scoring %s in %d worker process(es)", ", ".join(n for n, _ in heavy.values()), workers)
    out: list[Any] = []
    for i, (reward, spec) in enumerate(zip(rewards, config.rewards, strict=True)):
        if isinstance(reward, Reward):
            budget = spec.timeout_seconds or config.scoring.timeout_seconds
            out.append(ScoredReward(reward, budget, pool, index=i, prefix=prefix))
        else:
            assert isinstance(reward, RemoteReward)
            reward.prefix = prefix
            out.append(reward)  # remote: bounded by its request timeout and retries
    return out, pool
