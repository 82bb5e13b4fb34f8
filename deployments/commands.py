"""The self-service commands: `slipway onboard` and `slipway catalog list`.

They talk to a running platform: onboarding starts the ``onboard-service``
deployment, exactly as the form in the Prefect UI does, so it runs where the
platform's flows run and shows in the UI; the catalog is read from the git
server that the platform's block names.
"""

from __future__ import annotations

import os
import time
from typing import Any

from pydantic import ValidationError

from slipway.errors import ComponentError, InvalidRequest, SlipwayError
from slipway.home import SlipwayHome

__all__ = ["catalog_list", "format_rows", "onboard", "use_running_platform"]

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


def catalog_list(home: SlipwayHome) -> str:
    """The catalog as a table, or a line saying it is empty."""
    use_running_platform(home)
    from tasks.catalog import Catalog, catalog_rows

    entries = Catalog.load_default().entries()
    if not entries:
        return "The catalog is empty. Onboard a service: slipway onboard NAME --owner TEAM"
    return format_rows(catalog_rows(entries))


def onboard(
    home: SlipwayHome, request: dict[str, Any], *, dry_run: bool, timeout: float = 900
) -> str:
    """Run the onboard-service deployment and wait for it; returns what to print.

    The request is validated here first, so a bad name is refused with the
    rule it breaks before any run is created. Prefect reads its API URL once,
    when it is first imported, so the running platform is looked up before.
    """
    api = use_running_platform(home)
    from flows.onboard_service import ServiceRequest

    try:
        checked = ServiceRequest.model_validate(request)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise InvalidRequest(f"the request is refused: {problems}") from e
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    parameters = {"request": checked.model_dump(mode="json"), "dry_run": dry_run}
    try:
        run = run_deployment(ONBOARD_DEPLOYMENT, parameters=parameters, timeout=0)
    except ObjectNotFound as e:
        raise ComponentError(
            f"the deployment {ONBOARD_DEPLOYMENT} is not registered on {api}",
            hint="wait until `slipway up` prints that it is up, then try again",
        ) from e
    assert isinstance(run, FlowRun)
    link = api.removesuffix("/api") + f"/runs/flow-run/{run.id}"
    print(f"started {run.name}: {link}", flush=True)
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            current = client.read_flow_run(run.id)
            state = current.state
            if state is not None and state.is_final():
                break
            if time.monotonic() > deadline:
                raise SlipwayError(
                    f"onboarding {checked.name} has not finished after {timeout:.0f} s",
                    hint=f"follow it in the UI: {link}",
                )
            time.sleep(1)
    if not state.is_completed():
        raise SlipwayError(
            f"onboarding {checked.name} ended {state.name}: {state.message or 'no message'}",
            hint=f"the run's logs say why: {link}",
        )
    verb = "would be onboarded" if dry_run else "is onboarded"
    return f"{checked.name} {verb}. Details: {link}"
