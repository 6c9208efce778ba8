"""Leader election on a coordination.k8s.io/v1 Lease: every replica serves, one actuates.

The protocol is client-go's (``tools/leaderelection``), on the same Lease fields:

* A candidate takes the Lease when it is free (no holder) or when its record has not changed for
  ``leaseDuration`` *as observed on the candidate's own clock* (clocks of different machines are
  never compared, only rates are assumed equal).
* Every write is a PUT carrying the resourceVersion read just before: of two candidates racing
  for an expired Lease, one gets 409 Conflict and stays a follower.
* The leader renews every ``renewPeriod`` and stops leading when it has not renewed for the
  renew deadline (``leaseDuration - renewPeriod``), which ends strictly before any other
  candidate may take over: no two replicas actuate at once, as long as renewals reach the API.

E.g. leaseDuration 15 s, renewPeriod 5 s: a leader that dies is replaced within 15-20 s; a leader
cut off from the API stops actuating 10 s after its last renewal, 5 s before anyone may take over.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from scaler.core.clock import Clock
from scaler.edges.kubernetes.api import Api, KubeApiError, Obj, format_micro_time

log = logging.getLogger("prewarm.kubernetes")


def default_identity() -> str:
    """POD_NAME (downward API) or the host name, plus a random suffix (restarts are new holders)."""
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}_{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class LeaseRecord:
    holder: str
    duration_seconds: float
    renew_time: str
    transitions: int

    @classmethod
    def of(cls, lease: Obj) -> LeaseRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration_seconds=float(spec.get("leaseDurationSeconds") or 0),
            renew_time=str(spec.get("renewTime") or ""),
            transitions=int(spec.get("leaseTransitions") or 0),
        )


class LeaderElector:
    def __init__(
        self,
        clock: Clock,
        api: Api,
        *,
        namespace: str,
        name: str,
        lease_duration_seconds: float,
        renew_period_seconds: float,
        identity: str | None = None,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if renew_period_seconds >= lease_duration_seconds:
            raise ValueError(f"renewPeriod = {renew_period_seconds}s, must be < leaseDuration "
                             f"({lease_duration_seconds}s)")
        self.clock = clock
        self.api = api
        self.namespace = namespace
        self.name = name
        self.lease_duration = lease_duration_seconds
        self.renew_period = renew_period_seconds
        self.renew_deadline = max(renew_period_seconds, lease_duration_seconds - renew_period_seconds)
        self.identity = identity or default_identity()
        self.on_change = on_change
        self.transitions_total = 0
        """Times this replica became leader."""
        self.errors_total = 0
        self._renewed_at: float | None = None
        """Our clock before the last successful write as leader."""
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._leading = False

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.name}"

    def is_leader(self) -> bool:
        """True only within the renew deadline of our last successful renewal."""
        renewed = self._renewed_at
        return self._leading and renewed is not None and self.clock.now() < renewed + self.renew_deadline

    def try_acquire_or_renew(self) -> bool:
        """One election step (blocking): acquire, renew or observe. Returns ``is_leader()``."""
        now = self.clock.now()
        try:
            lease = self.api.get(self.path)
        except KubeApiError as exc:
            if exc.not_found:
                return self._create(now)
            return self._failed(exc)
        record = LeaseRecord.of(lease)
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = record.duration_seconds or self.lease_duration
        held_by_other = record.holder not in ("", self.identity)
        if held_by_other and now < self._observed_at + duration:
            self._set_leading(False)
            return False
        return self._write(lease, record, now)

    def _create(self, now: float) -> bool:
        body: Obj = {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": self._spec(now, acquire_time=now, transitions=0),
        }
        try:
            self.api.create(f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases", body)
        except KubeApiError as exc:
            if exc.conflict:
                self._set_leading(False)  # another candidate created it first
                return False
            return self._failed(exc)
        return self._won(now)

    def _write(self, lease: Obj, record: LeaseRecord, now: float) -> bool:
        spec = lease.get("spec") or {}
        taking_over = record.holder != self.identity
        acquire = now if taking_over else None
        transitions = record.transitions + (1 if taking_over and record.holder else 0)
        new_spec = self._spec(now, acquire_time=acquire, transitions=transitions)
        if acquire is None and spec.get("acquireTime"):
            new_spec["acquireTime"] = spec["acquireTime"]
        body = {**lease, "spec": new_spec}
        try:
            self.api.replace(self.path, body)  # carries metadata.resourceVersion: 409 when stale
        except KubeApiError as exc:
            if exc.conflict:
                self._set_leading(False)
                return False
            return self._failed(exc)
        return self._won(now)

    def _spec(self, now: float, *, acquire_time: float | None, transitions: int) -> Obj:
        spec: Obj = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "renewTime": format_micro_time(now),
            "leaseTransitions": transitions,
        }
        if acquire_time is not None:
            spec["acquireTime"] = format_micro_time(acquire_time)
        return spec

    def _won(self, now: float) -> bool:
        self._renewed_at = now
        self._observed = None  # our own write: re-observe from the next read
        self._observed_at = now
        self._set_leading(True)
        return True

    def _failed(self, exc: Exception) -> bool:
        self.errors_total += 1
        log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
        if not self.is_leader():
            self._set_leading(False)
        return self.is_leader()

    def _set_leading(self, leading: bool) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        if leading:
            self.transitions_total += 1
            log.info("%s is now the leader (lease %s/%s)", self.identity, self.namespace, self.name)
        else:
            log.info("%s is no longer the leader", self.identity)
        if self.on_change is not None:
            self.on_change(leading)

    def release(self) -> bool:
        """Give the Lease up (blocking) so a successor need not wait out the lease duration."""
        if not self._leading:
            return False
        self._set_leading(False)
        self._renewed_at = None
        for _ in range(3):  # 409: our own last renewal (still in flight at shutdown) got there first
            try:
                lease = self.api.get(self.path)
                if LeaseRecord.of(lease).holder != self.identity:
                    return False
                spec = {**(lease.get("spec") or {}), "holderIdentity": "", "leaseDurationSeconds": 1,
                        "renewTime": format_micro_time(self.clock.now())}
                self.api.replace(self.path, {**lease, "spec": spec})
                return True
            except KubeApiError as exc:
                if exc.conflict:
                    continue
                log.warning("releasing lease %s/%s failed: %s", self.namespace, self.name, exc)
                return False
        return False

    async def run(self) -> None:
        """Elect forever: renew every renewPeriod as leader, retry with jitter as follower."""
        while True:
            try:
                leading = await self.api.call(self.try_acquire_or_renew)
            except Exception as exc:  # network errors: a step failed, the loop goes on
                leading = self._failed(exc)
            # A leader whose renewal failed checks the deadline (is_leader) on every read.
            period = self.renew_period if leading else self.renew_period * random.uniform(1.0, 1.2)
            await asyncio.sleep(period)
            if self._leading and not self.is_leader():
                self._set_leading(False)
