"""Plan, apply, destroy and read outputs of one environment's Terraform workspace.

A workspace is a directory holding a copy of the environment's module, a
generated backend block and, when a provider mirror is set, a CLI config. It
lives under ``<workspaces>/<service>/<environment>``; its state lives wherever
the TerraformBackend block says.

Example:
    ```python
    tf = Terraform(TerraformBackend.load("default"), workspaces=home.terraform / "workspaces")
    ws = tf.workspace(Path("infra/modules/local-docker-env"), "payments", "dev")
    plan = tf.plan(ws, {"service": "payments", "environment": "dev", "port": 8080})
    if plan.has_changes:
        tf.apply(ws, plan)
    outputs = tf.output(ws)
    ```
"""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from slipway.errors import MissingDependency, SlipwayError, TerraformError
from slipway.private import make_private
from tasks.terraform.config import child_environment, cli_config, render_backend
from tasks.terraform.inputs import (
    Variables,
    check_variables,
    check_workspace_names,
    declared_variables,
)
from tasks.terraform.models import (
    OutputValue,
    PlanResult,
    prior_state,
    refresh_changed_nothing,
    saved_prior_state,
    summarize_plan,
)
from tasks.terraform.runner import Runner, bundled_library
from tasks.terraform.sessions import Sessions

if TYPE_CHECKING:
    from blocks.terraform_backend import TerraformBackend

__all__ = ["Terraform", "Workspace", "in_parallel"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
W = TypeVar("W")

_BACKEND_FILE = "_slipway_backend.tf.json"
_CLI_CONFIG = ".slipway.tfrc"
_VARS_FILE = "slipway.tfvars.json"  # not *.auto.*: a saved plan already holds the values
_LOCK_FILE = ".slipway.lock"
_COPY_IGNORE = shutil.ignore_patterns(
    ".terraform", "*.tfstate", "*.tfstate.*", "*.tfplan", _LOCK_FILE, _BACKEND_FILE
)


@dataclass(frozen=True)
class Workspace:
    """One service's environment: where its module comes from and where it runs."""

    service: str
    """DNS-label name of the service."""
    environment: str
    """DNS-label name of the environment, e.g. ``dev`` or ``preview-fix-login``."""
    module: Path
    """The Terraform module that describes the environment kind."""
    directory: Path
    """The rendered working directory; created by the first command."""


class Terraform:
    """Terraform commands against one TerraformBackend, one child process per command.

    Args:
        backend: Where state lives, and which Terraform runs.
        workspaces: Directory under which each ``<service>/<environment>`` workspace is rendered.
        timeout: Seconds that one command may take.
    """

    def __init__(
        self, backend: TerraformBackend, *, workspaces: Path, timeout: float = 600
    ) -> None:
        self._backend = backend
        self._root = workspaces
        mirror = backend.plugin_mirror
        self._cli_config = cli_config(mirror) if mirror is not None else None
        self._timeout = timeout
        self._sessions: Sessions | None = None

    def workspace(self, module: Path, service: str, environment: str) -> Workspace:
        """The workspace of ``service`` in ``environment``; touches nothing on disk.

        Raises:
            InvalidRequest: a name is not a DNS label.
        """
        check_workspace_names(service, environment)
        directory = self._root / service / environment
        return Workspace(service, environment, module.absolute(), directory.absolute())

    def init(self, ws: Workspace) -> None:
        """Render the workspace and initialize its backend and providers.

        Two runs on one environment (a provision and the nightly drift check,
        say) may get here at once; a file lock keeps them from rendering and
        initializing the same directory together. State has its own lock.
        """
        with _directory_lock(ws.directory):
            changed = self._render(ws)
            if changed or not (ws.directory / ".terraform").is_dir():
                argv = ["init", "-json", "-input=false", "-reconfigure"]
                self._runner(ws)(ws.directory, argv)

    def plan(
        self,
        ws: Workspace,
        variables: Variables,
        *,
        refresh_only: bool = False,
        destroy: bool = False,
        name: str = "plan",
        show_unchanged: bool = True,
    ) -> PlanResult:
        """Plan to ``<workspace>/<name>.tfplan`` and summarize it from ``show -json``.

        Variables are checked against the module's declarations before anything
        runs. With ``refresh_only``, ``has_changes`` means drift. Give each
        concurrent run its own ``name``, so no run applies another's plan.
        ``show_unchanged=False`` skips ``show`` for a normal plan without
        changes (one process fewer, for drift checks); its ``prior`` is then None.

        Raises:
            InvalidRequest: a variable is unknown, malformed or of the wrong type.
            StateLocked: another run holds the state lock.
            TerraformError: the plan failed, with Terraform's diagnostics.
        """
        self._prepare(ws, variables)
        plan_file = ws.directory / f"{name}.tfplan"
        argv = self._plan_argv(plan_file, refresh_only=refresh_only, destroy=destroy)
        done = self._runner(ws)(ws.directory, argv, changes_exit=True)
        has_changes = done.returncode == 2
        if not (has_changes or refresh_only or show_unchanged):
            return PlanResult(plan_file, False, refresh_only, summarize_plan({}))
        document = self.show(ws, plan_file)
        return self._planned(ws, plan_file, has_changes, refresh_only, document)

    def check_plans(
        self, ws: Workspace, variables: Variables, *, name: str
    ) -> tuple[PlanResult, PlanResult]:
        """A refresh-only plan and a normal plan, each shown only when it found something.

        What a drift check asks of every environment, in one process when
        bundled (`Runner.batch`). The normal plan (``<name>.tfplan``) goes
        first: its exit 0 says that no resource or output changes, and when its
        refresh changed no managed object either (`refresh_changed_nothing`),
        the refresh-only plan (``<name>-refresh.tfplan``) would find nothing:
        it is not run, and the state is read from the normal plan.

        Raises:
            InvalidRequest: a variable is unknown, malformed or of the wrong type.
            StateLocked: another run holds the state lock.
            TerraformError: a command failed, with Terraform's diagnostics.
        """
        self._prepare(ws, variables)
        refresh, normal = ws.directory / f"{name}-refresh.tfplan", ws.directory / f"{name}.tfplan"
        runner = self._runner(ws)
        plans = [(self._plan_argv(p, refresh_only=p is refresh), True) for p in (normal, refresh)]
        done = runner.batch(ws.directory, plans, while_changed=True)
        if len(done) == 1 and not refresh_changed_nothing(normal):
            done += runner.batch(ws.directory, plans[1:])  # e.g. drift that plans nothing
        pending, drifted = done[0].returncode == 2, len(done) == 2 and done[1].returncode == 2
        source = refresh if len(done) == 2 else normal  # where the state that was checked is read
        prior = None if drifted else saved_prior_state(source)
        shown = [p for p, want in ((source, prior is None), (normal, pending)) if want]
        done = runner.batch(ws.directory, [(["show", "-json", str(p)], False) for p in shown])
        views = {plan: _json_object(d.stdout, "show") for plan, d in zip(shown, done, strict=True)}
        prior = prior_state(views[source]) if prior is None else prior
        checked = PlanResult(refresh, False, True, summarize_plan({}), prior)
        if refresh in views:
            checked = self._planned(ws, refresh, drifted, True, views[refresh])
        if not pending:
            return checked, PlanResult(normal, False, False, summarize_plan({}))
        return checked, self._planned(ws, normal, True, False, views[normal])

    def _prepare(self, ws: Workspace, variables: Variables) -> None:
        """Check the variables, initialize the workspace, write the variables if they changed."""
        check_variables(variables, declared_variables(ws.module))
        self.init(ws)
        _write_if_changed(ws.directory / _VARS_FILE, json.dumps(dict(variables)))

    def _plan_argv(
        self, plan_file: Path, *, refresh_only: bool = False, destroy: bool = False
    ) -> list[str]:
        argv = ["plan", "-json", "-input=false", "-detailed-exitcode", f"-var-file={_VARS_FILE}"]
        argv += [f"-out={plan_file.name}", *self._lock_flags()]
        argv += ["-refresh-only"] if refresh_only else []
        argv += ["-destroy"] if destroy else []
        return argv

    def _planned(
        self,
        ws: Workspace,
        plan_file: Path,
        has_changes: bool,
        refresh_only: bool,
        document: Mapping[str, object],
    ) -> PlanResult:
        summary = summarize_plan(document)
        logger.info("plan of %s/%s: %s", ws.service, ws.environment, summary.describe())
        return PlanResult(plan_file, has_changes, refresh_only, summary, prior_state(document))

    def show(self, ws: Workspace, plan_file: Path) -> Mapping[str, object]:
        """Terraform's JSON view of a saved plan (``terraform show -json``), read-only."""
        done = self._runner(ws)(ws.directory, ["show", "-json", str(plan_file)])
        return _json_object(done.stdout, "show")

    def apply(self, ws: Workspace, plan: PlanResult) -> None:
        """Apply exactly the saved plan; Terraform refuses it if the state moved since.

        The plan file is removed afterwards, applied or not: it holds variable
        values, and Terraform would refuse it as stale anyway.

        Raises:
            StateLocked: another run holds the state lock.
            TerraformError: the apply failed or the plan is stale; plan again.
        """
        if not plan.plan_file.is_file():
            raise TerraformError(f"no saved plan at {plan.plan_file}", hint="plan again")
        argv = ["apply", "-json", "-input=false", *self._lock_flags(), str(plan.plan_file)]
        try:
            self._runner(ws)(ws.directory, argv)
        finally:
            plan.plan_file.unlink(missing_ok=True)
        logger.info("applied %s to %s/%s", plan.plan_file.name, ws.service, ws.environment)

    def destroy(self, ws: Workspace) -> None:
        """Destroy everything in the environment's state, with the last planned variables.

        Flows plan with ``destroy=True`` and apply that plan instead, so a
        reviewer sees what goes; this is for tests and scripts.
        """
        self.init(ws)
        argv = ["destroy", "-json", "-input=false", "-auto-approve", *self._lock_flags()]
        if (ws.directory / _VARS_FILE).is_file():
            argv.append(f"-var-file={_VARS_FILE}")
        self._runner(ws)(ws.directory, argv)
        logger.info("destroyed %s/%s", ws.service, ws.environment)

    def output(self, ws: Workspace) -> dict[str, OutputValue]:
        """The root module's outputs from state; sensitive values are marked, never logged."""
        done = self._runner(ws)(ws.directory, ["output", "-json"])
        found = {}
        for name, entry in _json_object(done.stdout, "output").items():
            if isinstance(entry, dict):
                found[name] = OutputValue(entry.get("value"), bool(entry.get("sensitive")))
        return found

    def discard(self, ws: Workspace) -> None:
        """Remove the rendered workspace; state is not touched."""
        with _directory_lock(ws.directory):
            shutil.rmtree(ws.directory, ignore_errors=True)

    def _lock_flags(self) -> list[str]:
        """Wait up to the block's lock timeout for another run's state lock; 0 fails at once."""
        return [f"-lock-timeout={self._backend.lock_timeout_seconds}s"]

    @contextmanager
    def reusing_processes(self, *, parallel: int = 1) -> Iterator[Sessions]:
        """Within this, batches (`check_plans`) run in long-lived processes, ended on exit.

        What a drift check of many environments does: the bundled Terraform's
        start is then paid once per core, not once per environment
        (`tasks.terraform.sessions`). A user's binary runs as before.

        Args:
            parallel: How many threads will run batches at once.
        """
        if self._sessions is not None:  # already inside: the outer one ends them
            yield self._sessions
            return
        with Sessions(parallel=parallel) as sessions:
            if parallel > 0 and self._backend.binary is None:  # warm before the first batch
                with suppress(MissingDependency):  # each batch reports it, as without sessions
                    sessions.start(self._child_environment(), bundled_library())
            self._sessions = sessions
            try:
                yield sessions
            finally:
                self._sessions = None

    def _runner(self, ws: Workspace) -> Runner:
        return Runner(
            self._child_environment(), self._backend.binary, self._timeout, self._sessions
        )

    def _child_environment(self) -> dict[str, str]:
        return child_environment(self._backend, cli_config_file=self._cli_config_file())

    def _cli_config_file(self) -> Path | None:
        """The provider mirror's CLI config; one file for every workspace, so they share sessions."""
        return self._root.absolute() / _CLI_CONFIG if self._cli_config is not None else None

    def _render(self, ws: Workspace) -> bool:
        """Copy the module and write the generated files; True if the backend changed."""
        ws.directory.mkdir(parents=True, exist_ok=True)
        shutil.copytree(
            ws.module,
            ws.directory,
            ignore=_COPY_IGNORE,
            copy_function=_copy_if_changed,
            dirs_exist_ok=True,
        )
        make_private(ws.directory)  # copytree copies the module's open modes into the home
        backend = render_backend(self._backend, ws.service, ws.environment)
        if backend.kind == "local":
            Path(str(dict(backend.settings)["path"])).parent.mkdir(parents=True, exist_ok=True)
        changed = _write_if_changed(ws.directory / _BACKEND_FILE, backend.as_json())
        config = self._cli_config_file()
        if config is not None and self._cli_config is not None:
            changed |= _write_if_changed(config, self._cli_config)
        return changed


def in_parallel(
    command: Callable[[W], T], items: Sequence[W], *, max_workers: int = 4
) -> list[T | SlipwayError]:
    """Run ``command`` on every item from a thread pool; results in the items' order.

    Each Terraform command is already its own process, so threads are enough to
    run workspaces side by side. A failure is returned in its item's place
    rather than raised, so one locked environment does not hide the others.
    """

    def guarded(item: W) -> T | SlipwayError:
        try:
            return command(item)
        except SlipwayError as e:
            return e

    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="terraform") as pool:
        return list(pool.map(guarded, items))


@contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """An exclusive lock on a workspace directory, shared by processes and threads."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / _LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _copy_if_changed(source: str, target: str) -> str:
    """``shutil.copy2``, unless ``target`` holds the same bytes already.

    A workspace is rendered before each of its commands; rewriting its
    unchanged files was most of a drift check's own work per environment.
    """
    with suppress(OSError):
        if Path(target).read_bytes() == Path(source).read_bytes():
            return target
    return str(shutil.copy2(source, target))


def _write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` unless it is there already; a reader sees the old file or the new one."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return True


def _json_object(text: str, command: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise TerraformError(f"terraform {command} printed no JSON", hint="report a bug") from e
    if not isinstance(value, dict):
        raise TerraformError(f"terraform {command} printed {type(value).__name__}, not an object")
    return value
