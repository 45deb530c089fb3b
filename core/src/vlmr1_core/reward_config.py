"""How a job names, bounds and ships its rewards: the reward part of the TrainerConfig.

A reward is one of three kinds, told apart by its spec alone (so the operator, which holds no
trainer code, knows which it is):

- a **built-in**, by its registered name (``rec_iou``, ``math``; `vlmr1 rewards list`);
- a **reference** ``MODULE:ATTRIBUTE`` to a function or class importable in the trainer's
  environment (the trainer image, or code shipped with the job under ``rewardCode``);
- a **remote** reward, any label with a ``remote`` block: batches are POSTed to an HTTP endpoint.

Imports nothing but pydantic and vlmr1_core's model base (the operator image reads it).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from typing import Any, Literal

from pydantic import Field

from vlmr1_core.apimodel import ApiModel, SecretKeyRef, cel_rule
from vlmr1_core.uri import Uri

#: Reward names the trainer image registers (vlmr1_trainer.rewards; a test keeps them equal).
#: Listed here because the operator, which has no trainer dependencies, checks spec.rewards.
KNOWN_REWARDS: frozenset[str] = frozenset(
    {
        "accuracy", "all_match", "format", "length_cosine", "math", "mcq", "od_ap", "od_ap50", "od_length",
        "od_weighted_sum", "rec_acc", "rec_format", "rec_iou", "repetition", "yes_no",
    }
)  # fmt: skip

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
#: ``package.module:attribute`` (the attribute may be dotted: ``module:Class.method`` is not
#: allowed, a nested attribute path such as ``module:namespace.fn`` is).
REFERENCE_PATTERN = rf"{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*"
BUILTIN_PATTERN = r"[a-z][a-z0-9_]*"
REWARD_NAME_PATTERN = rf"^({BUILTIN_PATTERN}|{REFERENCE_PATTERN})$"
#: Where the operator mounts ``rewardCode.configMap`` in every trainer pod (put on the import path).
REWARD_CODE_MOUNT = "/opt/vlmr1/reward-code"


def is_reference(name: str) -> bool:
    """Whether a reward name is a ``MODULE:ATTRIBUTE`` reference rather than a registered name.

    >>> is_reference("mypkg.rewards:exact"), is_reference("rec_iou")
    (True, False)
    """
    return re.fullmatch(REFERENCE_PATTERN, name) is not None


def reward_name_problem(name: str, known: Collection[str] = KNOWN_REWARDS) -> str | None:
    """Why ``name`` names no built-in reward among ``known`` (with the closest known name and all
    of them), or None when it is one. The one check of a built-in name: `vlmr1 validate` runs it
    with :data:`KNOWN_REWARDS`, the trainer with its registry, before anything loads. References
    (``module:attribute``) are not names in a registry: they are checked by importing them.

    >>> reward_name_problem("rec_iou") is None
    True
    >>> reward_name_problem("rec_iuo", {"rec_iou", "format"})
    "unknown reward 'rec_iuo'; did you mean 'rec_iou'? (known rewards: format, rec_iou)"
    """
    if name in known:
        return None
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return (
        f"unknown reward {name!r}{hint} (known rewards: {', '.join(sorted(known))}; "
        "your own reward is named MODULE:ATTRIBUTE)"
    )


def auth_env_var(label: str) -> str:
    """The environment variable a remote reward's token arrives in (the operator fills it from
    ``remote.authSecret``; locally, export it yourself).

    >>> auth_env_var("judge")
    'VLMR1_REWARD_AUTH_JUDGE'
    """
    return f"VLMR1_REWARD_AUTH_{label.upper()}"


class RemoteRewardSpec(ApiModel):
    """An HTTP scoring endpoint (a code sandbox, an LLM judge).

    Each request is ``POST url`` with JSON ``{"reward": label, "completions": [str, ...],
    "columns": {column: [value, ...]}, "params": {...}}``; the answer is ``{"scores": [number or
    null, ...]}``, one per completion, in order.
    """

    url: str = Field(min_length=1, max_length=2048, pattern=r"^https?://[^\s]+$")
    """Endpoint URL (http:// or https://), e.g. http://judge.default.svc:8000/score."""

    timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    """Seconds one request may take (connect and answer) before it counts as failed. Default 30:
    an LLM judge answers a batch in seconds; a hung endpoint must not hold a step for long."""

    batch_size: int = Field(default=64, ge=1, le=4096)
    """Completions per request; a larger scoring call is split. Default 64."""

    concurrency: int = Field(default=4, ge=1, le=256)
    """Requests in flight at once per trainer process. Default 4: enough to hide latency without
    flooding a shared endpoint from every rank."""

    max_retries: int = Field(default=3, ge=0, le=20)
    """Retries of a request that failed to connect, timed out or got a 5xx answer (4xx and malformed
    answers are not retried: they would fail again). Default 3."""

    backoff_seconds: float = Field(default=0.5, ge=0, le=60)
    """Wait before the first retry; each further retry waits twice as long. Default 0.5."""

    auth_secret: SecretKeyRef | None = None
    """Secret key holding a token sent as ``<authHeader>: <authScheme> <token>``. The operator
    passes it to the pods as VLMR1_REWARD_AUTH_<LABEL>; for `vlmr1 run`, export that variable."""

    auth_header: str = Field(default="Authorization", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9-]+$")
    """Header the token is sent in."""

    auth_scheme: str = Field(default="Bearer", max_length=64)
    """Prefix of the header value (empty: the bare token)."""

    on_failure: Literal["fail", "zero"] = "fail"
    """When a request fails after its retries (or answers the wrong count or non-numbers): fail
    stops training with an error naming the endpoint and what went wrong; zero scores the
    request's completions 0.0, counts them in rewards/<label>/failures and goes on. Default
    fail: silently zeroed rewards teach the policy nothing and are easy to miss."""


class RewardSpec(ApiModel):
    """One weighted reward function: a built-in, a MODULE:ATTRIBUTE reference, or a remote endpoint."""

    name: str = Field(max_length=200, pattern=REWARD_NAME_PATTERN)
    """A built-in reward (`vlmr1 rewards list`: rec_iou, format, od_ap, math, ...), or
    MODULE:ATTRIBUTE naming a function or class importable by the trainer (TRL's reward contract:
    completions plus dataset columns as keyword lists -> one float or None each), or, with remote,
    any lower-case label. The name labels the reward's metrics (rewards/<name>/mean)."""

    weight: float = 1.0
    """Weight of this reward in the sum the advantages are computed from."""

    params: dict[str, Any] = Field(default_factory=dict)
    """Reward parameters: a built-in's (`vlmr1 rewards list`), a referenced class's constructor
    arguments, or, for a remote reward, sent with every request."""

    timeout_seconds: float | None = Field(default=None, gt=0, le=3600)
    """Time budget per completion, in seconds; a completion over it scores 0 (None for rewards
    that mean "cannot judge") and counts in rewards/<name>/timeouts. Unset: scoring.timeoutSeconds.
    Remote rewards are bounded by remote.timeoutSeconds per request instead."""

    remote: RemoteRewardSpec | None = None
    """Score by POSTing batches to an HTTP endpoint; name is then just the reward's label."""

    @cel_rule(
        rule="!has(self.remote) || self.name.matches('^[a-z][a-z0-9_]*$')",
        message="a remote reward's name is a label (lower-case letters, digits, _), not MODULE:ATTRIBUTE",
        field_path=".name",
    )
    def _remote_label(self) -> bool:
        return self.remote is None or re.fullmatch(BUILTIN_PATTERN, self.name) is not None

    @property
    def kind(self) -> Literal["builtin", "reference", "remote"]:
        """Which of the three kinds of reward this spec names."""
        if self.remote is not None:
            return "remote"
        return "reference" if is_reference(self.name) else "builtin"


class RewardCodeSpec(ApiModel):
    """Reward source shipped with the job, for trainer images that do not contain it.

    The folder is mounted read-only into every trainer pod and put first on the import path,
    so ``rewards[].name: my_rewards:exact`` imports ``my_rewards.py`` from it. Reward code runs
    inside the trainer, with the trainer's permissions (its service account, secrets, volumes).
    """

    config_map: str | None = Field(default=None, min_length=1, max_length=253)
    """ConfigMap whose keys are file names (``my_rewards.py``): mounted at /opt/vlmr1/reward-code.
    Kubernetes only (a ConfigMap holds up to 1 MiB)."""

    uri: Uri | None = None
    """A folder of reward code: a local path (`vlmr1 run`) or pvc://claim/path (mounted read-only)."""

    @cel_rule(
        rule="has(self.configMap) != has(self.uri)",
        message="rewardCode takes exactly one of configMap or uri",
        field_path="",
    )
    def _one_source(self) -> bool:
        return (self.config_map is None) != (self.uri is None)

    @cel_rule(
        rule="!has(self.uri) || !self.uri.startsWith('s3://') && !self.uri.startsWith('hf://')"
        " && !self.uri.startsWith('builtin://')",
        message="rewardCode.uri is a folder: a local path or pvc://claim/path",
        field_path=".uri",
    )
    def _folder_uri(self) -> bool:
        return self.uri is None or not self.uri.startswith(("s3://", "hf://", "builtin://"))


class ScoringSpec(ApiModel):
    """How rewards are computed: time budgets and the worker processes CPU-heavy rewards use."""

    timeout_seconds: float = Field(default=1.0, gt=0, le=3600)
    """Default time budget per completion and reward, in seconds (a reward's own timeoutSeconds
    wins). Default 1: VLM-R1's rewards take milliseconds on honest completions; an adversarial one
    (10**10**10 for math-verify, 80 KB for repetition) would otherwise hold the step for seconds."""

    workers: int | None = Field(default=None, ge=1, le=256)
    """Worker processes per trainer process for CPU-heavy rewards (math-verify, COCO AP,
    json-repair, and references that set ``cpu_bound = True``), started once per run. Unset: the
    pod's CPU limit divided by the processes per node, at least 1."""
