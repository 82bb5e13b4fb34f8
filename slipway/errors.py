"""The one error hierarchy of Slipway.

Every error says what failed and what to do about it. The CLI prints
``str(error)`` as one line and exits non-zero; it never shows a traceback for
these.

    SlipwayError
    ├── ConfigurationError (ValueError)   a setting or block value is wrong
    ├── InvalidRequest (ValueError)       a user's input is refused before any change
    ├── MissingDependency                 a binary, package or engine is not there
    │   ├── DockerUnavailable             the Docker engine cannot be reached
    │   └── SandboxUnavailable            bubblewrap is missing or cannot confine here
    ├── CommandError                      an external command failed
    │   ├── CommandNotFound               ... because its binary is not installed
    │   └── CommandTimeout                ... because it ran out of time
    ├── TerraformError                    Terraform refused a command; carries its diagnostics
    │   └── StateLocked                   ... because another run holds the state lock
    ├── TemplateError                     a service template could not be rendered
    ├── ScanError                         a security scanner crashed, timed out or gave no result
    ├── GateRefused                       a policy (security gate, approval) said no
    ├── GitError                          a git clone, commit or push failed
    ├── CatalogError                      the service catalog refused a read or a change
    │   └── ServiceNotFound (KeyError)    ... because no entry has that name
    ├── BuildError                        an image build, its tests or its push failed
    ├── DeployError                       a deployment did not become healthy; the old one serves
    │   └── AnalysisFailed                ... or its metrics went bad after the switch: rolled back
    ├── Superseded                        a newer push of the same target took over; nothing deployed
    ├── DocsBuildError                    mkdocs refused a service's docs
    ├── MonitoringError                   Prometheus or Alertmanager refused or could not be reached
    ├── StorageError                      the artifact store refused a read or write
    │   ├── ObjectNotFound (KeyError)     ... because the key does not exist
    │   └── WriteConflict                 ... because the object changed since it was read
    └── ComponentError                    `slipway up` could not start or reach a part
        └── PortInUse                     ... because its port is taken
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AnalysisFailed",
    "BuildError",
    "CatalogError",
    "DeployError",
    "DocsBuildError",
    "GateRefused",
    "GitError",
    "ServiceNotFound",
    "CommandError",
    "CommandNotFound",
    "CommandTimeout",
    "ComponentError",
    "ConfigurationError",
    "DockerUnavailable",
    "InvalidRequest",
    "MissingDependency",
    "MonitoringError",
    "ObjectNotFound",
    "PortInUse",
    "SandboxUnavailable",
    "SlipwayError",
    "ScanError",
    "StateLocked",
    "StorageError",
    "Superseded",
    "TemplateError",
    "TerraformError",
    "WriteConflict",
]


class SlipwayError(Exception):
    """Root of every error Slipway raises on purpose.

    Args:
        message: What failed, in one sentence.
        hint: What the user should do about it; appended to the message.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} Fix: {hint}")


class ConfigurationError(SlipwayError, ValueError):
    """A setting or a block document holds a value that cannot work."""


class InvalidRequest(SlipwayError, ValueError):
    """User input was refused before anything was changed."""


class MissingDependency(SlipwayError):
    """Something Slipway needs is not installed or not running."""


class DockerUnavailable(MissingDependency):
    """The Docker engine of the deploy target cannot be reached."""


class SandboxUnavailable(MissingDependency):
    """Untrusted work cannot be confined: bubblewrap is missing or cannot create namespaces.

    Nothing that runs a service's code or reads its repository starts unconfined instead.
    """


class TerraformError(SlipwayError):
    """A Terraform command failed.

    Args:
        message: What failed.
        diagnostics: Terraform's own error and warning summaries, in order.
        hint: What to do about it.
    """

    def __init__(
        self, message: str, *, diagnostics: Sequence[str] = (), hint: str | None = None
    ) -> None:
        self.diagnostics = tuple(diagnostics)
        detail = "; ".join(self.diagnostics)
        super().__init__(f"{message}: {detail}" if detail else message, hint=hint)


class StateLocked(TerraformError):
    """Another run holds the Terraform state lock of this environment."""


class TemplateError(SlipwayError):
    """A service template is missing or could not be rendered."""


class ScanError(SlipwayError):
    """A scanner crashed, timed out or produced output that cannot be read.

    A scan with this error is ``errored`` for that tool, never ``clean``.
    """


class GateRefused(SlipwayError):
    """A policy refused to let a change through: a security gate or a human approver."""


class GitError(SlipwayError):
    """A git operation (clone, checkout, commit, push) failed."""


class CatalogError(SlipwayError):
    """The service catalog could not be read, or refused a change."""


class ServiceNotFound(CatalogError, KeyError):
    """The catalog has no service of that name."""

    def __str__(self) -> str:
        return SlipwayError.__str__(self)


class BuildError(SlipwayError):
    """An image build, the tests inside it, or its push to the registry failed."""


class DeployError(SlipwayError):
    """A new deployment did not become healthy; the previous one keeps serving."""


class AnalysisFailed(DeployError):
    """The new version's metrics went bad after the switch, so it was rolled back."""


class Superseded(SlipwayError):
    """A newer push of the same service and environment took over, so this run deploys nothing.

    Not a failure: build-test-deploy ends Cancelled with this message, and the
    newer run delivers.
    """


class MonitoringError(SlipwayError):
    """Prometheus or Alertmanager could not be reached, or refused a query or config."""


class DocsBuildError(SlipwayError):
    """``mkdocs build --strict`` refused a site; carries mkdocs' warnings."""


class StorageError(SlipwayError):
    """The artifact store refused a read or a write."""


class ObjectNotFound(StorageError, KeyError):
    """The artifact store has no object under the requested key."""

    def __str__(self) -> str:
        # KeyError quotes its argument; keep the plain sentence instead.
        return SlipwayError.__str__(self)


class WriteConflict(StorageError):
    """A conditional write found the object changed since it was read: read it again."""


class ComponentError(SlipwayError):
    """`slipway up` could not start, reach or stop one of its parts."""


class PortInUse(ComponentError):
    """A port that a component must bind is already taken."""


class CommandError(SlipwayError):
    """An external command exited non-zero.

    Carries the command and the tail of its output, so the message alone is
    enough to diagnose the failure from a flow run's log.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        returncode: int | None,
        stderr: str = "",
        stdout: str = "",
        message: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.stdout = stdout
        tail = _tail(stderr or stdout)
        text = message or f"`{' '.join(self.argv[:3])}` exited with {returncode}"
        super().__init__(f"{text}: {tail}" if tail else text, hint=hint)


class CommandNotFound(CommandError):
    """The command's binary is not on PATH."""


class CommandTimeout(CommandError):
    """The command did not finish within its time limit and was killed."""


def _tail(text: str, lines: int = 20) -> str:
    """The last lines of a command's output, which is where tools put the cause."""
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])
