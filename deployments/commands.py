"""The self-service commands: `slipway onboard`, and what the catalog commands share.

They talk to a running platform: onboarding starts the ``onboard-service``
deployment, exactly as the form in the Prefect UI does, so it runs where the
platform's flows run and shows in the UI; the catalog is read from the git
server that the platform's block names.
"""

from __future__ import annotations

import os
import time
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from slipway.errors import ComponentError, InvalidRequest, SlipwayError
from slipway.home import SlipwayHome

__all__ = [
    "format_rows",
    "onboard",
    "run_and_wait",
    "use_running_platform",
    "validated",
]

ONBOARD_DEPLOYMENT = "onboard-service/onboard-service"


def use_running_platform(home: SlipwayHome) -> str:
    """Point Prefect's client at this home's running server; returns its API URL."""
    from deployments.state import read_state

    state = read_state(home)
    if state is None:
        raise ComponentError(
            f"Slipway is not running on {home.root}",
            hint="start it with `slipway up` (or `make run`), or pass --home",
        )
    url = state.prefect_api_url()
    os.environ["PREFECT_API_URL"] = url
    return url


def format_rows(rows: list[dict[str, str]]) -> str:
    """A plain-text table with a header, columns as wide as their widest cell."""
    if not rows:
        return ""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip()]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


def onboard(
    home: SlipwayHome, request: dict[str, Any], *, dry_run: bool, timeout: float = 900
) -> str:
    """Run the onboard-service deployment and wait for it; returns what to print.

    The request is validated here first, so a bad name is refused with the
    rule it breaks before any run is created. Prefect reads its API URL once,
    when it is first imported, so the running platform is looked up before.
    """
    use_running_platform(home)
    from flows.onboard_service import ServiceRequest

    checked = validated(ServiceRequest, request)
    parameters = {"request": checked.model_dump(mode="json"), "dry_run": dry_run}
    link = run_and_wait(
        home, ONBOARD_DEPLOYMENT, parameters, what=f"onboarding {checked.name}", timeout=timeout
    )
    verb = "would be onboarded" if dry_run else "is onboarded"
    return f"{checked.name} {verb}. Details: {link}"


M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], values: dict[str, Any]) -> M:
    """``values`` as ``model``, or InvalidRequest naming each field and the rule it broke."""
    try:
        return model.model_validate(values)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise InvalidRequest(f"the request is refused: {problems}") from e


def run_and_wait(
    home: SlipwayHome,
    deployment: str,
    parameters: dict[str, Any],
    *,
    what: str,
    timeout: float = 900,
) -> str:
    """Start a run of ``deployment``, print its link, wait until it ends; returns the link.

    Raises:
        ComponentError: the deployment is not registered (the platform is still starting).
        SlipwayError: the run did not complete, with its state and message.
    """
    api = use_running_platform(home)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    try:
        run = run_deployment(deployment, parameters=parameters, timeout=0)
    except ObjectNotFound as e:
        raise ComponentError(
            f"the deployment {deployment} is not registered on {api}",
            hint="wait until `slipway up` prints that it is up, then try again",
        ) from e
    assert isinstance(run, FlowRun)
    link = api.removesuffix("/api") + f"/runs/flow-run/{run.id}"
    print(f"started {run.name}: {link}", flush=True)
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(run.id).state
            if state is not None and state.is_final():
                break
            if time.monotonic() > deadline:
                raise SlipwayError(
                    f"{what} has not finished after {timeout:.0f} s",
                    hint=f"follow it in the UI: {link}",
                )
            time.sleep(1)
    if not state.is_completed():
        raise SlipwayError(
            f"{what} ended {state.name}: {state.message or 'no message'}",
            hint=f"the run's logs say why: {link}",
        )
    return link
