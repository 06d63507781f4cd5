"""An assessment of live HTTP prediction endpoints on loopback: capability-driven attack choice,
the black-box attack through the endpoint within its query budget, measured posture findings, and
endpoints that break during the attack (the job fails with its reason and the queries it spent;
the rest of the assessment goes on)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from invguard.assess.config import load_config
from invguard.assess.engine import run_assessment, write_reports
from invguard.assess.jobs import JobOutcome
from invguard.assess.registry import ATTACK_REGISTRY, AUTO_WHITE_BOX_RULE, select_attacks
from invguard.data import ImageDataset
from invguard.gateway.model_server import PREDICT_PATH, serve_in_thread
from invguard.models import ModelCache, TrainedModel
from invguard.targets import Capability, OutputSpec
from tests._servers import serve_model, torch_predict_proba

BUDGET = 1500  # queries per job: 12 steps of 40 classes x 3 points
BREAKS_AFTER = 256  # attack inputs a breaking endpoint answers before it breaks
SMALL = 16  # canary and posture probes send at most this many inputs per request


# --- capability-driven choice (fast) -------------------------------------------------------------


def _reasons(skipped: list[dict[str, str]]) -> dict[str, str]:
    return {s["attack"]: s["reason"] for s in skipped}


def test_auto_picks_what_the_access_allows() -> None:
    white = frozenset(Capability) - {Capability.LOGITS}
    full = OutputSpec().capabilities()
    top3 = OutputSpec(top_k=3).capabilities()
    labels = OutputSpec(scores=False).capabilities()

    chosen, skipped = select_attacks(white, has_auxiliary=True)
    assert chosen == ["miface", "miface-zo", "learned", "brep"]  # strongest access first
    # one white-box attack: MI-FACE for a model without convolutions (none given here)
    assert _reasons(skipped) == dict.fromkeys(
        ("ppa", "ifgmi", "ppdg", "gmi", "plg"), AUTO_WHITE_BOX_RULE
    )

    chosen, skipped = select_attacks(full, has_auxiliary=True)
    assert chosen == ["miface-zo", "learned", "brep"]
    assert _reasons(skipped) == dict.fromkeys(
        ("miface", "ppa", "ifgmi", "ppdg", "gmi", "plg"),
        "needs gradients; the target offers labels, probabilities, scores",
    )

    chosen, skipped = select_attacks(top3, has_auxiliary=False)
    assert chosen == ["miface-zo"]
    reasons = _reasons(skipped)
    assert reasons["miface"].startswith("needs gradients; the target offers labels, scores")
    for name in ("learned", "brep"):
        assert reasons[name] == "needs auxiliary (public) images: set the system's 'auxiliary'"

    chosen, skipped = select_attacks(labels, has_auxiliary=True)
    assert chosen == ["brep"]
    reasons = _reasons(skipped)
    assert reasons["miface-zo"] == "needs scores; the target offers labels"
    assert reasons["learned"] == "needs scores; the target offers labels"

    chosen, skipped = select_attacks(labels, has_auxiliary=False)
    assert chosen == []
    assert set(_reasons(skipped)) == set(ATTACK_REGISTRY)


def test_registry_rules_and_budgets() -> None:
    rules = {name: info.rule_id for name, info in ATTACK_REGISTRY.items()}
    assert rules == {
        "miface": "IG-MI-001",
        "miface-zo": "IG-MI-002",
        "learned": "IG-MI-003",
        "brep": "IG-MI-004",
        "ppa": "IG-MI-005",
        "gmi": "IG-MI-006",
        "plg": "IG-MI-007",
        "ifgmi": "IG-MI-008",
        "ppdg": "IG-MI-009",
    }
    assert ATTACK_REGISTRY["learned"].needs_auxiliary
    assert ATTACK_REGISTRY["brep"].needs_auxiliary
    assert not ATTACK_REGISTRY["miface-zo"].needs_auxiliary
    assert ATTACK_REGISTRY["learned"].iterations_field is None  # budgets by queries or seconds


# --- live endpoints (slow) -----------------------------------------------------------------------


class Breaking:
    """Serves the model for small requests (canary, posture probes) and for the first
    ``BREAKS_AFTER`` attack inputs, then answers every large request with ``mode``'s failure:
    an HTML maintenance page, or scores for the wrong number of classes."""

    def __init__(self, model: Any, mode: str) -> None:
        self.predict = torch_predict_proba(model)
        self.mode = mode
        self.attack_inputs = 0  # inputs received in large requests, the failing one included

    async def handle(self, request: Request) -> Response:
        doc = json.loads(await request.body())
        x = np.asarray(doc["inputs"], dtype=np.float32)
        if len(x) > SMALL:
            broken = self.attack_inputs >= BREAKS_AFTER
            self.attack_inputs += len(x)
            if broken and self.mode == "html":
                return HTMLResponse("<!DOCTYPE html><html><body>Down for maintenance</body></html>")
            if broken:
                return JSONResponse({"predictions": np.full((len(x), 7), 1 / 7).tolist()})
        return JSONResponse({"predictions": self.predict(x).tolist()})

    def app(self) -> Starlette:
        return Starlette(routes=[Route(PREDICT_PATH, self.handle, methods=["POST"])])


@contextmanager
def _endpoints(model: Any, shape: tuple[int, ...]) -> Iterator[dict[str, Any]]:
    with ExitStack() as stack:
        good = stack.enter_context(serve_model(model, input_shape=shape, num_classes=40))
        out: dict[str, Any] = {"good": good}
        for mode in ("html", "classes"):
            breaking = Breaking(model, mode)
            base = stack.enter_context(serve_in_thread(breaking.app()))
            out[mode] = (base + PREDICT_PATH, breaking)
        yield out


def _system(ident: str, url: str) -> dict[str, Any]:
    return {
        "id": ident,
        "target": {"type": "http", "url": url, "max_batch": 64, "retries": 0, "probe_burst": 10},
        "data": {"builtin": "att-faces"},
        "attacks": [{"name": "auto", "budget": {"queries": BUDGET}}],
    }


@pytest.mark.slow
def test_assessing_live_endpoints(
    tmp_path: Path, faces: ImageDataset, faces_mlp: TrainedModel, model_cache: ModelCache
) -> None:
    outcomes: dict[str, JobOutcome] = {}

    def progress(done: int, total: int, outcome: JobOutcome | None) -> None:
        if outcome is not None:  # None: the start
            outcomes[outcome.system_id] = outcome

    with _endpoints(faces_mlp.model, faces.image_shape) as ep:
        cfg = {
            "name": "live endpoints",
            "fail_on": "critical",
            "audit_db": None,
            "systems": [
                _system("open-api", ep["good"].url),
                _system("html-api", ep["html"][0]),
                _system("classes-api", ep["classes"][0]),
            ],
        }
        path = tmp_path / "invguard.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        assessment = run_assessment(
            load_config(path),
            out_dir=tmp_path / "out",
            history_db=tmp_path / "history.db",
            use_audit=False,
            cache_dir=model_cache.root,
            progress=progress,
            write=False,  # the reports are written below
        )
        served = ep["good"].stats.served_inputs
        broken = {mode: ep[mode][1].attack_inputs for mode in ("html", "classes")}

    systems = {s.id: s for s in assessment.systems}
    assert set(systems) == {"open-api", "html-api", "classes-api"}

    # 1. the healthy endpoint: full probabilities, no auxiliary data -> the black-box score attack
    good = systems["open-api"]
    assert [j["attack"] for j in good.jobs] == ["miface-zo"]
    assert good.jobs[0]["status"] == "ok"
    assert good.complete
    reasons = _reasons(good.skipped)
    assert set(reasons) == {"miface", "ppa", "ifgmi", "ppdg", "gmi", "plg", "learned", "brep"}
    assert reasons["miface"].startswith("needs gradients")
    assert reasons["ppa"].startswith("needs gradients")
    assert "auxiliary" in reasons["learned"]
    # the budget is respected exactly: every step asks 120 inputs, the 13th would pass 1,500
    zo = outcomes["open-api"]
    spent = zo.attack_summary["queries"]
    assert spent == 1440
    assert spent <= BUDGET < spent + 120
    # ... and every query the attack counted reached the server, beside the canary inputs (sent
    # when the system is prepared and again when the job builds its target) and the probes
    probes = sum(int(p["evidence"].get("queries", 0)) for p in good.posture)
    assert served == 2 * 4 + probes + spent
    measured = [f for f in good.findings if f.rule_id == "IG-MI-002"]
    assert len(measured) == 1
    assert measured[0].evidence["queries"] == spent
    # posture, measured: open, full probabilities, no rate limit, plain HTTP
    failed_checks = {p["check"] for p in good.posture if not p["passed"]}
    assert failed_checks >= {
        "authentication",
        "output_detail",
        "rate_limiting",
        "transport_security",
    }
    posture_rules = {f.rule_id for f in good.findings if f.rule_id.startswith("IG-POS-")}
    assert len(posture_rules) >= 4

    # 2. endpoints that break mid-attack: the job fails with its reason and its queries
    expected = {
        "html-api": (
            "html",
            r"response is not JSON \(content-type 'text/html",
        ),
        "classes-api": ("classes", r"'/predictions' has 7 class scores per input, expected 40"),
    }
    for ident, (mode, pattern) in expected.items():
        s = systems[ident]
        assert not s.complete
        assert [j["status"] for j in s.jobs] == ["failed"]
        error = s.jobs[0]["error"]
        assert ep[mode][0].split("//")[1] in error  # names the endpoint
        assert re.search(pattern, error), error
        outcome = outcomes[ident]
        assert outcome.status == "failed"
        # the inputs sent stay counted, including the request that failed
        assert outcome.attack_summary["queries"] == broken[mode] > BREAKS_AFTER
        job_findings = [f for f in s.findings if f.rule_id == "IG-JOB-001"]
        assert len(job_findings) == 1
        assert "miface-zo (seed 0) failed" in job_findings[0].summary
        assert s.posture  # the probes ran before the endpoint broke

    passed, reason = assessment.gate()
    assert not passed
    assert "incomplete" in reason
    assert assessment.jobs_failed == 2

    # 3. the reports (SARIF needs a rule for every finding, posture findings included)
    write_reports(assessment, tmp_path / "out")
    report = json.loads((tmp_path / "out" / "assessment.json").read_text())
    assert {s["id"] for s in report["systems"]} == set(systems)
    sarif = json.loads((tmp_path / "out" / "assessment.sarif").read_text())
    rule_ids = {r["id"] for r in sarif["runs"][0]["tool"]["driver"]["rules"]}
    assert {f.rule_id for f in assessment.findings} <= rule_ids
    failed_rows = [j for s in report["systems"] for j in s["jobs"] if j["status"] == "failed"]
    assert all(j["queries"] > BREAKS_AFTER for j in failed_rows)
