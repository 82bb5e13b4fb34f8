"""Helpers of the environment and drift flow tests: catalog entries, paused runs, artifacts.

Not a conftest: other flow tests share this directory, and these are only for
tests/flows/test_environments.py and tests/flows/test_drift.py.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import Artifact, FlowRun, StateType
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

from tasks.catalog import Catalog, CatalogEntry

MODULE = Path(__file__).resolve().parents[2] / "infra" / "modules" / "local-docker-env"


def unique(prefix: str) -> str:
    """A service name no other test (or earlier run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def add_service(name: str, *, port: int, environments: tuple[str, ...] = ("dev", "prod")) -> None:
    """A catalog entry, as onboarding would have written it."""
    entry = CatalogEntry(
        name=name,
        owner="group:platform",
        port=port,
        repository=f"/srv/git/{name}.git",
        environments=environments,
    )
    Catalog.load_default().save(entry, message=f"test: add {name}")


def catalog_entry(name: str) -> CatalogEntry:
    return Catalog.load_default().get(name)


def module_with(tmp_path: Path, name: str, extra_tf: str) -> Path:
    """The platform's module plus one more file, e.g. a slow or failing provisioner."""
    module = tmp_path / name
    shutil.copytree(MODULE, module)
    (module / "extra.tf").write_text(extra_tf)
    return module


class Background:
    """A call running in a thread (a flow that will pause), with its outcome."""

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.result: Any = None
        self.error: BaseException | None = None

        def target() -> None:
            try:
                self.result = fn(*args, **kwargs)
            except BaseException as e:
                self.error = e

        self._thread = threading.Thread(target=target, daemon=True)
        self._thread.start()

    def join(self, timeout: float = 120) -> Background:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the flow did not finish in time"
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()


def wait_paused(flow_name: str, service: str, timeout: float = 60) -> FlowRun:
    """The paused run of ``flow_name`` for ``service``, once it is paused."""
    deadline = time.monotonic() + timeout
    paused = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
    )
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                flow_run_filter=paused,
                limit=50,
                sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            )
            for run in runs:
                if run.parameters.get("service") == service:
                    return run
            time.sleep(0.3)
    raise AssertionError(f"no paused {flow_name} run for {service} within {timeout} s")


def resume(
    flow_run_id: UUID,
    *,
    approve: bool,
    comment: str,
    approver: str = "",
    token: str = "",
    timeout: float = 30,
) -> None:
    """Answer the approval form, as an approver does in the UI (retried until the form is saved)."""
    deadline = time.monotonic() + timeout
    answer_form = {"approve": approve, "comment": comment, "approver": approver, "token": token}
    with get_client(sync_client=True) as client:
        while True:
            answer = client.resume_flow_run(flow_run_id, run_input=answer_form)
            if answer.status.value == "ACCEPT":
                return
            assert time.monotonic() < deadline, f"resume refused: {answer.details}"
            time.sleep(0.3)


def latest_artifact(key: str) -> Artifact:
    """The newest version of a keyed artifact, whether a flow or a task made it.

    Raw API call: the 3.8 client sends ``task_runs: null``, which this server
    refuses (422), and any task-run filter at all would hide flow-level artifacts.
    """
    body = {
        "artifacts": ArtifactFilter(key=ArtifactFilterKey(any_=[key])).model_dump(mode="json"),
        "sort": ArtifactSort.CREATED_DESC.value,
        "limit": 1,
        "offset": 0,
    }
    with get_client(sync_client=True) as client:
        found = client.request("POST", "/artifacts/filter", json=body).json()
    assert found, f"no artifact {key}"
    return Artifact.model_validate(found[0])


def wait_events(
    name: str, resource_id: str, *, at_least: int = 1, timeout: float = 30
) -> list[Any]:
    """Events of one name on one resource, once the server has stored them."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_events(
                EventFilter(
                    event=EventNameFilter(name=[name]),
                    resource=EventResourceFilter(id=[resource_id]),
                ),
                limit=50,
            )
            if len(page.events) >= at_least:
                return list(page.events)
            assert time.monotonic() < deadline, f"no {name} event for {resource_id}"
            time.sleep(0.5)
