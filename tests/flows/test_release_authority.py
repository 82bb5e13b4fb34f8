"""Prod takes an approver who did not push the change, and a rollback only to what prod approved.

Real Prefect, git, registry and Docker engine. The forgeries are made the
way any caller of Prefect's API could make them: a table artifact posted
under the history's key.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort

from blocks import PlatformSettings
from flows.delivery import build_test_deploy, promote, rollback
from slipway.errors import GateRefused
from tasks.approval import ApprovalRecord, approvals_key
from tasks.release import deployment_history, history_key, live_container
from tasks.signed_records import read_verified
from tests.flows.approval_helpers import give_group, issue_tokens
from tests.flows.delivery_fixtures import Delivery, delivery_platform, wait_for
from tests.flows.terraform_helpers import resume

pytestmark = pytest.mark.docker

REF = "refs/heads/main"


@pytest.fixture(scope="module")
def delivery(
    prefect_server: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Delivery]:
    with delivery_platform(request, tmp_path_factory) as configured:
        give_group("delivery", members=("alice", "bob", "carol"), approvers=("alice", "bob"))
        # What the gate judges is the security tests' business; here it only has to let a
        # clean commit pass, also where the scanners are not installed (a scan then errors).
        settings = PlatformSettings.load("default")
        settings.gate_block_errored_scans = False
        settings.save("default", overwrite=True)
        yield configured


@pytest.fixture(scope="module")
def tokens(delivery: Delivery) -> dict[str, str]:
    return issue_tokens("alice", "bob", "carol")


class Promotion:
    """`promote` to prod in a thread; the test answers its form."""

    def __init__(self, delivery: Delivery) -> None:
        self.began = datetime.now(UTC)
        self.state: Any = None
        self._thread = threading.Thread(
            target=lambda: setattr(
                self,
                "state",
                promote(
                    delivery.service,
                    "dev",
                    "prod",
                    approval_timeout_seconds=180,
                    return_state=True,
                ),
            ),
            daemon=True,
        )
        self._thread.start()

    def paused(self) -> FlowRun:
        def find() -> FlowRun | None:
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs(
                    flow_filter=FlowFilter(name=FlowFilterName(any_=["promote"])),
                    sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                    limit=20,
                    offset=0,
                )
            return next(
                (r for r in runs if r.state_type == StateType.PAUSED and r.created >= self.began),
                None,
            )

        found = wait_for(find, timeout=240, what="the paused promotion")
        assert isinstance(found, FlowRun)
        return found

    def join(self) -> Any:
        self._thread.join(240)
        assert not self._thread.is_alive()
        return self.state


def _forge(api: str, key: str, row: dict[str, str]) -> None:
    body = {"key": key, "type": "table", "data": json.dumps([row]), "description": "ok"}
    httpx.post(f"{api}/artifacts/", json=body, timeout=10).raise_for_status()


def test_the_pusher_cannot_approve_prod_and_another_approver_can(
    delivery: Delivery, tokens: dict[str, str]
) -> None:
    pushed = build_test_deploy(delivery.service, delivery.commit(), REF, triggered_by="alice")
    promotion = Promotion(delivery)
    run = promotion.paused()
    resume(run.id, approve=True, comment="mine, ship it", approver="alice", token=tokens["alice"])
    run = promotion.paused()  # refused: the run waits on
    assert live_container(delivery.client, delivery.service, "prod") is None  # type: ignore[arg-type]
    resume(run.id, approve=True, comment="reviewed", approver="bob", token=tokens["bob"])
    state = promotion.join()
    assert state.is_completed(), state.message

    record = state.result()
    assert (record.sha, record.approved_by) == (pushed.sha, "bob")
    assert deployment_history(delivery.service, "prod")[0].approved_by == "bob"
    answers = read_verified(approvals_key(delivery.service, "prod"), ApprovalRecord).records
    decisions = sorted((a.at, a.decision, a.approver, a.reason) for a in answers)
    assert [(d, who) for _, d, who, _ in decisions] == [("refused", "alice"), ("approved", "bob")]
    assert "made or asked for this change" in decisions[0][3]


def test_a_forged_release_record_gives_no_way_into_prod(
    delivery: Delivery, prefect_server: str
) -> None:
    approved = deployment_history(delivery.service, "prod")
    assert approved and approved[0].approved_by, "needs the approved promotion above"
    before = live_container(delivery.client, delivery.service, "prod")  # type: ignore[arg-type]

    # An image that never went through the gate or an approval, recorded as if it had.
    unvetted = build_test_deploy(delivery.service, delivery.commit("unvetted"), REF)
    genuine = {k: str(v) for k, v in approved[0].model_dump(mode="json").items()}
    forged = {**genuine, "sha": unvetted.sha, "image": unvetted.image, "signature": ""}
    _forge(prefect_server, history_key(delivery.service, "prod"), forged)
    with pytest.raises(GateRefused, match="carries no signature"):
        rollback(delivery.service, "prod", to=unvetted.sha[:12])

    # The same with a genuine record's signature kept: edited, and refused.
    edited = {**genuine, "sha": unvetted.sha, "image": unvetted.image}
    _forge(prefect_server, history_key(delivery.service, "prod"), edited)
    with pytest.raises(GateRefused, match="forged or edited"):
        rollback(delivery.service, "prod", to=unvetted.sha[:12])
    assert live_container(delivery.client, delivery.service, "prod") == before  # type: ignore[arg-type]

    # It ran in dev, genuinely, but never reached prod: no rollback of prod to it either.
    assert unvetted.sha in {r.sha for r in deployment_history(delivery.service, "dev")}
    assert unvetted.sha not in {r.sha for r in deployment_history(delivery.service, "prod")}
