"""Where jobs run: in this process (default) or as Ray tasks on a local or remote cluster."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from invguard.assess.config import ConfigError
from invguard.assess.jobs import JobOutcome, JobSpec
from invguard.assess.worker import run_job
from invguard.errors import MissingDependencyError

log = logging.getLogger(__name__)

JobFn = Callable[[JobSpec], JobOutcome]


class Executor(Protocol):
    """Runs jobs and yields their outcomes as they finish (in any order)."""

    name: str

    def run(self, specs: Sequence[JobSpec]) -> Iterator[JobOutcome]: ...

    def close(self) -> None: ...


class InProcessExecutor:
    """Runs jobs one after another in this process."""

    name = "in-process"

    def __init__(self, fn: JobFn = run_job) -> None:
        self._fn = fn

    def run(self, specs: Sequence[JobSpec]) -> Iterator[JobOutcome]:
        for spec in specs:
            yield self._fn(spec)

    def close(self) -> None:
        pass


def _ray_job(spec_json: str) -> dict[str, Any]:
    """Ray task body: plain JSON in, plain data out (no pickled InvGuard objects cross the wire)."""
    import json

    from invguard.assess.jobs import JobSpec, pack_images
    from invguard.assess.worker import run_job

    spec = JobSpec(**json.loads(spec_json))
    outcome = run_job(spec)
    recon = outcome.reconstructions
    return {
        "record": outcome.record(),
        "recon": pack_images(recon) if recon is not None else None,
    }


class RayExecutor:
    """Runs each job as a Ray task: ``address=None`` starts a local Ray instance, otherwise
    connects to an existing cluster (``ray.init(address=...)``)."""

    name = "ray"

    def __init__(
        self, *, address: str | None = None, num_cpus: int | None = None, cpus_per_job: float = 1
    ) -> None:
        try:
            import ray
        except ImportError as exc:
            raise MissingDependencyError("ray", "ray") from exc
        self._ray = ray
        self._owns = False
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
            "configure_logging": False,
        }
        # Ray workers find the package through the same interpreter; keep its env small.
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if address:
            _check_reachable(address)
        try:
            if not ray.is_initialized():
                if address:
                    ray.init(address=address, **kwargs)
                else:
                    ray.init(num_cpus=num_cpus, **kwargs)
                self._owns = True
        except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError, ...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            target = f"Ray cluster at {address!r}" if address else "a local Ray instance"
            raise ConfigError(f"--ray-address: cannot connect to {target}: {first}") from exc
        self._task = ray.remote(num_cpus=cpus_per_job, max_retries=0)(_ray_job)

    def run(self, specs: Sequence[JobSpec]) -> Iterator[JobOutcome]:
        ray = self._ray
        pending = {self._task.remote(s.to_json()): s for s in specs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            ref = done[0]
            spec = pending.pop(ref)
            try:
                data = ray.get(ref)
                yield JobOutcome.from_record(data["record"], data["recon"])
            except Exception as exc:  # the task itself crashed (worker died, ...)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                yield JobOutcome(
                    key=spec.key,
                    system_id=spec.system_id,
                    attack=spec.attack,
                    seed=spec.seed,
                    status="failed",
                    error=f"ray task failed: {first}",
                )

    def close(self) -> None:
        if self._owns:
            self._ray.shutdown()
            self._owns = False


_NOT_RAY = ("UNAVAILABLE", "UNIMPLEMENTED", "DEADLINE_EXCEEDED", "INTERNAL", "UNKNOWN")


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast, in one line, when ``host:port`` is not a Ray cluster's GCS (Ray itself would
    retry for half a minute and log every attempt). Probes Ray's ``GetClusterId`` gRPC method."""
    if "://" in address or address in ("auto", "local") or ":" not in address:
        return  # Ray Client (ray://) and auto-discovery speak other protocols
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"--ray-address: no Ray cluster answers at {address!r} (UNAVAILABLE: {reason})"
        ) from exc
    try:
        import grpc
    except ImportError:  # grpcio comes only with ray[default]: the TCP check above must do
        return
    channel = grpc.insecure_channel(address)
    call = channel.unary_unary(
        "/ray.rpc.NodeInfoGcsService/GetClusterId",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    try:
        call(b"", timeout=timeout)
    except grpc.RpcError as exc:
        code = exc.code().name if exc.code() is not None else "UNKNOWN"
        if code in _NOT_RAY:
            detail = (exc.details() or code).strip().splitlines()[0]
            raise ConfigError(
                f"--ray-address: no Ray cluster answers at {address!r} ({code}: {detail})"
            ) from exc
    finally:
        channel.close()


def make_executor(name: str, *, ray_address: str | None = None) -> Executor:
    if name in ("in-process", "inprocess", "local"):
        if ray_address:
            raise ConfigError("--ray-address needs --executor ray")
        return InProcessExecutor()
    if name == "ray":
        return RayExecutor(address=ray_address)
    raise ConfigError(f"--executor must be 'in-process' or 'ray', got {name!r}")
