"""Scale-out on Prefect's own engine: the work pool, the pinned code, crash detection.

In the roles ``server`` and ``all``, `slipway up` runs
``python -m deployments.pool --project DIR --repository URL --commit SHA``
once the server answers. It

1. makes sure the ``slipway`` process work pool exists;
2. sets up crash detection: flow runs send heartbeats, and two Prefect
   automations mark a run Crashed when its host stops answering
   (`CrashDetection`), so no run is lost silently when a worker host dies;
3. pins the platform code in the Prefect Variables ``slipway_repository``
   and ``slipway_commit``, which the ``pull`` step of prefect.yaml reads at
   the start of every flow run: every worker clones the same commit, and
   setting the variable upgrades them all;
4. applies every deployment of prefect.yaml to the pool, then exits.

Workers (``slipway up --role worker``) read the heartbeat interval from the
server too (`server_heartbeat`), so the two sides of crash detection agree.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from slipway.api_auth import API_AUTH_FILE, http_auth
from slipway.errors import CommandError, ConfigurationError

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.events.schemas.automations import AutomationCore

__all__ = [
    "COMMIT_VARIABLE",
    "FLOW_RUN_COMMAND",
    "HEARTBEAT_VARIABLE",
    "REPOSITORY_VARIABLE",
    "CrashDetection",
    "PlatformCode",
    "apply_to_pool",
    "check_entrypoints_committed",
    "ensure_crash_detection",
    "main",
    "online_workers",
    "platform_code",
    "server_heartbeat",
]

REPOSITORY_VARIABLE = "slipway_repository"
"""Prefect Variable: the git URL workers clone the platform from."""
COMMIT_VARIABLE = "slipway_commit"
"""Prefect Variable: the commit every worker checks out; changing it upgrades all workers."""
HEARTBEAT_VARIABLE = "slipway_flow_heartbeat_seconds"
"""Prefect Variable: the flow-run heartbeat interval that crash detection expects of workers."""
FLOW_RUN_COMMAND = "python -m slipway.prefect_patches.flow_run_process"
"""How a worker starts a flow run: Prefect's ``-m prefect.engine`` after the flow-run patches.

``python`` is the worker's own interpreter: `slipway up` puts its ``bin`` first on PATH."""


@dataclass(frozen=True)
class PlatformCode:
    """The platform code every worker runs: one commit of one repository."""

    repository: str
    """A URL (or path) that every worker host can clone."""
    commit: str
    """The full commit id workers check out."""
    dirty: bool = False
    """Whether the server's checkout has changes that are not in `commit`."""
    local: bool = True
    """Whether `commit` is in the server's checkout, so its files can be checked."""


def platform_code(
    project_dir: Path, *, repository: str | None = None, commit: str | None = None
) -> PlatformCode:
    """The repository and commit to pin, by default the checkout's ``origin`` and HEAD.

    Without an ``origin`` remote, the checkout itself is the repository: fine
    for workers on this host, not for others (pass ``--repository``).

    Raises:
        ConfigurationError: the checkout is no git repository and nothing was
            given, or the commit does not name one commit.
    """
    from slipway.process import run

    def git(*args: str) -> str:
        return run(["git", "-C", str(project_dir), *args], timeout=30).stdout.strip()

    try:
        resolved = git("rev-parse", "--verify", f"{commit or 'HEAD'}^{{commit}}")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except CommandError as e:
        if commit and repository:  # a commit we cannot see here: trust the operator
            return PlatformCode(repository, commit, local=False)
        raise ConfigurationError(
            f"cannot pin a commit of {project_dir}: {e.message}",
            hint="run from a git checkout of Slipway, or pass --repository URL and --commit SHA",
        ) from e
    if repository is None:
        origin = run(
            ["git", "-C", str(project_dir), "remote", "get-url", "origin"], check=False, timeout=30
        )
        repository = origin.stdout.strip() if origin.returncode == 0 else str(project_dir.resolve())
    return PlatformCode(repository, resolved, dirty)


def check_entrypoints_committed(project_dir: Path, code: PlatformCode) -> None:
    """Refuse to pin a commit that lacks the flow file of a declared deployment.

    Workers run the commit, not the checkout: a flow that exists only as an
    uncommitted file here would fail on every worker.

    Raises:
        ConfigurationError: naming the deployments whose files are not in the commit.
    """
    if not code.local:
        return
    from slipway.process import run

    # Plain YAML, not Prefect's model: `slipway up` calls this before it points
    # Prefect's settings at its server, and importing Prefect would fix them too early.
    try:
        manifest = yaml.safe_load((project_dir / "prefect.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigurationError(
            f"cannot read {project_dir / 'prefect.yaml'}: {e}", hint="fix prefect.yaml"
        ) from e
    files = {
        str(d.get("name")): str(d["entrypoint"]).partition(":")[0]
        for d in manifest.get("deployments") or []
        if isinstance(d, dict) and d.get("entrypoint")
    }
    paths = sorted(set(files.values()))
    argv = ["git", "-C", str(project_dir), "ls-tree", "-r", "--name-only", code.commit, "--"]
    listed = run([*argv, *paths], timeout=30).stdout.split()
    missing = sorted(f"{name} ({path})" for name, path in files.items() if path not in listed)
    if missing:
        raise ConfigurationError(
            f"commit {code.commit[:12]} lacks the flow of {', '.join(missing)}, so workers "
            "could not run it",
            hint="commit those files (workers run the commit, not this checkout), "
            "or pass --commit with one that has them",
        )


@dataclass(frozen=True)
class CrashDetection:
    """How the server tells a flow run whose host died from one that is still working.

    Flow runs send a heartbeat event every `heartbeat_seconds`; two Prefect
    automations mark a run Crashed when its heartbeats stop for
    `crash_after_seconds`, or when it stays Pending (claimed by a worker that
    died before starting it) for `pending_after_seconds`.
    """

    heartbeat_seconds: int = 30
    """Flow-run heartbeat interval on workers; Prefect's minimum is 30."""
    crash_after_seconds: int = 90
    """Silence after which a Running flow run is marked Crashed."""
    pending_after_seconds: int = 600
    """Time after which a flow run still Pending is marked Crashed."""

    def __post_init__(self) -> None:
        if self.heartbeat_seconds < 30:
            raise ConfigurationError(
                f"a heartbeat every {self.heartbeat_seconds} s is below Prefect's minimum of 30 s",
                hint="use --heartbeat-seconds 30 or more",
            )
        if self.crash_after_seconds < self.heartbeat_seconds + 10:
            raise ConfigurationError(
                f"--crash-after {self.crash_after_seconds} s would crash healthy runs that "
                f"beat every {self.heartbeat_seconds} s",
                hint="make it at least the heartbeat interval plus 10 s; three intervals is safe",
            )


_CRASH_ON_SILENCE = "slipway: crash flow runs whose heartbeat stopped"
_CRASH_ON_PENDING = "slipway: crash flow runs stuck in Pending"
_LATER_STATES = (
    "Running",
    "Retrying",
    "Completed",
    "Failed",
    "Cancelled",
    "Cancelling",
    "Crashed",
    "Paused",
    "Suspended",
    "Scheduled",
    "AwaitingRetry",
    "Late",
)


def _crash_automations(crash: CrashDetection) -> list[AutomationCore]:
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    def rule(name: str, after: str, expect: set[str], seconds: int, why: str) -> AutomationCore:
        return AutomationCore(
            name=name,
            description="Managed by `slipway up`; edits are overwritten at its next start.",
            trigger=EventTrigger(
                after={after},
                expect=expect,
                match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=timedelta(seconds=seconds),
            ),
            actions=[ChangeFlowRunState(state=StateType.CRASHED, message=why)],
        )

    terminal = {f"prefect.flow-run.{s}" for s in ("Completed", "Failed", "Cancelled", "Crashed")}
    return [
        rule(
            _CRASH_ON_SILENCE,
            "prefect.flow-run.heartbeat",
            {"prefect.flow-run.heartbeat", *terminal},
            crash.crash_after_seconds,
            f"No heartbeat for {crash.crash_after_seconds} s: the worker host running this "
            "flow run died or lost the server. Run it again.",
        ),
        rule(
            _CRASH_ON_PENDING,
            "prefect.flow-run.Pending",
            {f"prefect.flow-run.{s}" for s in _LATER_STATES},
            crash.pending_after_seconds,
            f"Pending for {crash.pending_after_seconds} s: the worker that took this flow "
            "run never started it. Run it again.",
        ),
    ]


def ensure_crash_detection(client: SyncPrefectClient, crash: CrashDetection) -> None:
    """Create or update the two crash-detection automations and publish the heartbeat."""
    for automation in _crash_automations(crash):
        existing = client.read_automations_by_name(automation.name)
        if existing:
            client.update_automation(existing[0].id, automation)
            for extra in existing[1:]:
                client.delete_automation(extra.id)
        else:
            client.create_automation(automation)
    _set_variable(client, HEARTBEAT_VARIABLE, str(crash.heartbeat_seconds))


def _set_variable(client: SyncPrefectClient, name: str, value: str) -> None:
    from prefect.client.schemas.actions import VariableCreate, VariableUpdate

    if client.read_variable_by_name(name) is None:
        client.create_variable(VariableCreate(name=name, value=value, tags=["slipway"]))
    else:
        client.update_variable(VariableUpdate(name=name, value=value))


def _job_template() -> dict[str, Any]:
    """Prefect's process job template, starting flow runs with `FLOW_RUN_COMMAND`."""
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    template["variables"]["properties"]["command"]["default"] = FLOW_RUN_COMMAND
    return template


def _ensure_process_pool(client: SyncPrefectClient, name: str) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    template = _job_template()
    try:
        pool = client.read_work_pool(name)
    except ObjectNotFound:
        client.create_work_pool(
            WorkPoolCreate(name=name, type="process", base_job_template=template),
            overwrite=False,
        )
        return
    if pool.type != "process":
        raise ConfigurationError(
            f"work pool {name!r} exists with type {pool.type!r}; Slipway's workers are process workers",
            hint=f"delete it in the UI (Work Pools) or with `prefect work-pool delete {name}`",
        )
    if pool.base_job_template != template:  # a pool made by an earlier Slipway
        client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))


def apply_to_pool(project_dir: Path, code: PlatformCode, crash: CrashDetection) -> list[str]:
    """Apply every deployment of prefect.yaml to its work pool; returns their names.

    Pins ``code`` in the Prefect Variables that the pull steps read, so every
    worker clones the same commit, and sets up crash detection first, so no
    run started from here can be lost silently.
    """
    from prefect.client.orchestration import get_client

    from deployments.serve import pull_steps, runner_deployments

    steps = pull_steps(project_dir)
    deployments = runner_deployments(project_dir, pool_steps=steps)
    with get_client(sync_client=True) as client:
        for pool in sorted({d.work_pool_name or "slipway" for d in deployments}):
            _ensure_process_pool(client, pool)
        ensure_crash_detection(client, crash)
        _set_variable(client, REPOSITORY_VARIABLE, code.repository)
        _set_variable(client, COMMIT_VARIABLE, code.commit)
    for deployment in deployments:
        deployment.apply()
    return [d.name for d in deployments]


def online_workers(api_url: str, pool: str) -> set[str]:
    """Names of the workers that the server counts as online in ``pool``; empty on error."""
    import httpx  # here: `slipway up` imports this module before Prefect's server starts

    try:
        response = httpx.post(
            f"{api_url}/work_pools/{pool}/workers/filter",
            json={"limit": 200},
            timeout=2.0,
            auth=http_auth(),
        )
        response.raise_for_status()
    except httpx.HTTPError:
        return set()
    return {w["name"] for w in response.json() if w.get("status") == "ONLINE"}


def server_heartbeat(api_url: str) -> int | None:
    """The heartbeat interval the server published, or None while it is not set up.

    Raises:
        ConfigurationError: the server refuses this host's auth string.
    """
    import httpx

    try:
        response = httpx.get(
            f"{api_url}/variables/name/{HEARTBEAT_VARIABLE}", timeout=2.0, auth=http_auth()
        )
    except httpx.HTTPError:
        return None
    if response.status_code == 401:
        raise ConfigurationError(
            f"the Prefect server at {api_url} refuses this host's API auth string",
            hint=f"copy the server home's keys/{API_AUTH_FILE} to this home's keys/ (mode 0600)",
        )
    if not response.is_success:
        return None
    return int(response.json()["value"])


def main(argv: list[str] | None = None) -> None:
    """Apply prefect.yaml to the work pool and exit; `slipway up` runs this."""
    parser = argparse.ArgumentParser(prog="python -m deployments.pool")
    parser.add_argument("--project", type=Path, default=Path.cwd())
    parser.add_argument("--repository", help="the git URL workers clone (default: origin)")
    parser.add_argument("--commit", help="the commit workers check out (default: HEAD)")
    parser.add_argument("--heartbeat-seconds", type=int, default=CrashDetection.heartbeat_seconds)
    parser.add_argument("--crash-after", type=int, default=CrashDetection.crash_after_seconds)
    args = parser.parse_args(argv)
    project_dir: Path = args.project.resolve()

    import os

    os.chdir(project_dir)  # entrypoints are relative to the project
    code = platform_code(project_dir, repository=args.repository, commit=args.commit)
    crash = CrashDetection(args.heartbeat_seconds, args.crash_after)
    names = apply_to_pool(project_dir, code, crash)
    print(f"applied {len(names)} deployments to the work pool at {code.commit[:12]}")


if __name__ == "__main__":
    main()
