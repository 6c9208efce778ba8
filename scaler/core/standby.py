"""Standby capacity: balloon GPUs per node pool.

(Extra replicas for an unsure forecast are the SLO margin's job: :mod:`scaler.core.slo`.)

Balloons are pause pods with a negative PriorityClass that request GPUs on a pool's nodes
(the Cluster Autoscaler "overprovisioning" pattern). They make the autoscaler (cluster-autoscaler
or Karpenter) add nodes *before* the model's pods exist; a real pod preempts a balloon and starts
on a node that is already Ready, skipping the node wait.

Sizing, with explicit semantics in the manner of Karpenter's CapacityBuffer ("limits act as an
upper bound")::

    wanted  = sum over the pool's models of prewarm_replicas x gpusPerReplica
              (replicas the forecast wants within lead + node provisioning, beyond those ordered)
    short   = max(0, wanted - free)      free: GPUs a new replica could take now without a balloon
    pods    = ceil(short / gpusPerReplica)               one balloon pod = one replica's shape
    pods    = min(pods, floor(maxBalloonGpus / gpusPerReplica))            the cap is a ceiling

E.g. 8-GPU nodes, 1 GPU per replica, two models forecasting +3 and +2 replicas within the lead, 1
GPU free: 5 wanted, 4 short -> 4 balloon pods (4 GPUs). When the real pods are ordered the
engine's prewarm_replicas falls, and the balloons shrink as those pods take the capacity.
Balloon-held GPUs are not "free" here (that would shrink the balloons that made them), but they
are spare for a real pod (see :attr:`PoolCapacity.spare_gpus`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from scaler.core.config import ModelSettings, NodePool
from scaler.core.model import Decision


@dataclass(frozen=True)
class NodeGpus:
    """GPU accounting of one Ready, schedulable node (counts of GPUs)."""

    allocatable: int
    used: int = 0
    """Requested by bound pods other than balloons (running or starting)."""
    balloon: int = 0
    """Requested by bound balloon pods (preemptible by any real pod)."""


@dataclass(frozen=True)
class PoolCapacity:
    """GPUs of one pool, in whole replica slots (a replica cannot span nodes)."""

    allocatable_gpus: int = 0
    free_gpus: int = 0
    """In replica-sized slots, taken by neither real pods nor balloons (nor pending pods)."""
    balloon_gpus: int = 0
    """Held by bound balloon pods."""
    spare_gpus: int = 0
    """In replica-sized slots a real pod could take now: free + balloon-held (preempted)."""


def pool_capacity(
    nodes: Iterable[NodeGpus], *, gpus_per_replica: int, pending_gpus: int = 0
) -> PoolCapacity:
    """Capacity from per-node counts; ``pending_gpus`` (unbound real pods of the pool) is taken first.

    Slots are counted per node: two nodes with one free GPU each hold no 2-GPU replica.
    """
    allocatable = free = balloon = spare = 0
    for node in nodes:
        idle = max(0, node.allocatable - node.used - node.balloon)
        allocatable += node.allocatable
        balloon += node.balloon
        free += _slots(idle, gpus_per_replica)
        # Whatever real pods do not use, balloons preempted (never more than the node has).
        spare += _slots(max(0, node.allocatable - node.used), gpus_per_replica)
    return PoolCapacity(
        allocatable_gpus=allocatable,
        free_gpus=max(0, free - pending_gpus),
        balloon_gpus=balloon,
        spare_gpus=max(0, spare - pending_gpus),
    )


def has_spare(capacity: PoolCapacity | None, gpus_per_replica: int) -> bool | None:
    """Whether one more replica finds a GPU slot without a new node; None when unknown."""
    if capacity is None:
        return None
    return capacity.spare_gpus >= gpus_per_replica


@dataclass(frozen=True)
class PoolStatus:
    """What the Kubernetes side knows of one pool's balloons (counts; ages in seconds)."""

    balloon_pods: int = 0
    """Pods set on the pool's balloon Deployment."""
    pending_pods: int = 0
    """Balloon pods not bound to a node yet (waiting for the autoscaler to add one)."""
    oldest_pending_seconds: float = 0.0
    """Age of the oldest pending balloon pod (0 when none is pending)."""


@dataclass(frozen=True)
class BalloonPlan:
    """What one pool's balloon Deployment should hold (GPU counts)."""

    pool: str
    wanted_gpus: int
    """GPUs the forecast wants ready within the node-provisioning lead."""
    free_gpus: int
    pods: int
    """Balloon pods, each requesting ``gpus_per_pod``."""
    gpus_per_pod: int
    capped: bool
    """maxBalloonGpus cut the plan (more headroom was wanted)."""
    hold: bool = False
    """A model of the pool has no valid decision: never shrink on missing data (fail static)."""

    @property
    def gpus(self) -> int:
        return self.pods * self.gpus_per_pod


def pool_prewarm_replicas(
    pool: NodePool, models: Sequence[ModelSettings], decisions: Mapping[str, Decision]
) -> tuple[int, bool]:
    """(sum of the pool's models' prewarm_replicas, whether any decision is missing or invalid)."""
    total = 0
    missing = False
    for model in models:
        if model.nodePool != pool.name:
            continue
        decision = decisions.get(model.name)
        if decision is None or not decision.valid:
            missing = True
            continue
        total += max(0, decision.prewarm_replicas)
    return total, missing


def balloon_gpus(
    pool: NodePool,
    models: Sequence[ModelSettings],
    decisions: Mapping[str, Decision],
    *,
    capacity: PoolCapacity | None,
) -> BalloonPlan:
    """The pool's balloon size (see the module docstring for the arithmetic)."""
    replicas, missing = pool_prewarm_replicas(pool, models, decisions)
    per_pod = pool.gpusPerReplica
    wanted = replicas * per_pod
    free = capacity.free_gpus if capacity is not None else 0
    pods = _ceil_div(max(0, wanted - free), per_pod)
    limit = pool.maxBalloonGpus // per_pod
    return BalloonPlan(
        pool=pool.name, wanted_gpus=wanted, free_gpus=free, pods=min(pods, limit),
        gpus_per_pod=per_pod, capped=pods > limit, hold=missing,
    )


def _slots(gpus: int, per_replica: int) -> int:
    return (gpus // per_replica) * per_replica


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)
