"""Assessment jobs: one (system, attack, seed) each, self-contained so any executor can run them."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from invguard import __version__

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

JOB_FORMAT = 2  # 2: judged by the judge panel (verdict, calibration rows)


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to run one job (JSON-ready, so it can travel to Ray workers)."""

    key: str
    system_id: str
    system_index: int
    attack_index: int
    attack: str
    seed: int
    system: dict[str, Any]
    base_dir: str
    cache_dir: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class JobOutcome:
    """What a job produced: metrics and reconstructions, or the reason it failed."""

    key: str
    system_id: str
    attack: str
    seed: int
    status: str  # "ok" or "failed"
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    per_class: list[dict[str, Any]] = field(default_factory=list)
    attack_summary: dict[str, Any] = field(default_factory=dict)
    target_info: dict[str, Any] = field(default_factory=dict)
    reconstructions: np.ndarray | None = None
    seconds: float = 0.0

    def record(self) -> dict[str, Any]:
        """JSON-ready record without the image arrays."""
        return {
            "key": self.key,
            "system": self.system_id,
            "attack": self.attack,
            "seed": self.seed,
            "status": self.status,
            "error": self.error,
            "metrics": self.metrics,
            "per_class": self.per_class,
            "attack_summary": self.attack_summary,
            "target": self.target_info,
            "seconds": round(self.seconds, 3),
        }

    @staticmethod
    def from_record(record: dict[str, Any], recon: bytes | None) -> JobOutcome:
        return JobOutcome(
            key=record["key"],
            system_id=record["system"],
            attack=record["attack"],
            seed=int(record["seed"]),
            status=record["status"],
            error=record.get("error"),
            metrics=record.get("metrics") or {},
            per_class=record.get("per_class") or [],
            attack_summary=record.get("attack_summary") or {},
            target_info=record.get("target") or {},
            reconstructions=unpack_images(recon) if recon else None,
            seconds=float(record.get("seconds", 0.0)),
        )


def pack_images(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, x=x.astype(np.float16))
    return buf.getvalue()


def unpack_images(blob: bytes) -> np.ndarray:
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        out: np.ndarray = npz["x"].astype(np.float32)
    return out


def job_key(
    *, system_fingerprint: str, data_fingerprint: str, attack: dict[str, Any], seed: int
) -> str:
    """Content address of a job: same model, data, attack settings and seed give the same key."""
    blob = json.dumps(
        {
            "format": JOB_FORMAT,
            "invguard": __version__,
            "target": system_fingerprint,
            "data": data_fingerprint,
            "attack": attack,
            "seed": seed,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()
