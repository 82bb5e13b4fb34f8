"""The post-receive hook of the local git server's repositories, and their private files.

`install_push_hook` writes a repository's hook and its settings (`PushHook`):
the hook runs the installed platform's `deployments.post_receive`, which
signs each push and hands it to the webhook bridge. `keep_private` makes git
write a repository's files for its owner alone.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import git
from pydantic import SecretStr

from slipway.errors import CommandError, ConfigurationError, GitError
from slipway.home import HOST, Ports, SlipwayHome
from slipway.private import write_private
from slipway.process import run

__all__ = ["PushHook", "hook_script", "install_push_hook", "keep_private", "platform_push_hook"]


@dataclass(frozen=True)
class PushHook:
    """Where a local repository's post-receive hook sends pushes."""

    bridge_url: str
    """The bridge's GitHub endpoint, e.g. ``http://127.0.0.1:4300/hooks/github``."""
    secret: SecretStr
    """The webhook secret the hook signs with."""
    spool: Path
    """Where deliveries wait while the bridge is down."""


def platform_push_hook(home: SlipwayHome, ports: Ports) -> PushHook:
    """The hook settings of this platform: its bridge, its secret, its spool."""
    from blocks.webhook import load_webhook_secret

    return PushHook(
        bridge_url=f"http://{HOST}:{ports.bridge}/hooks/github",
        secret=load_webhook_secret(),
        spool=home.spool,
    )


def keep_private(repository: Path) -> None:
    """Make git write the repository's files for its owner alone, whoever's umask pushes.

    ``core.sharedRepository=0600`` overrides the umask of every git process
    that writes here (a developer's ``git push`` included): files 0600,
    objects 0400, directories 0700. Set by git itself, which replaces the
    config file atomically, and only when missing: a reader (the bridge's
    catalog look, a push) must never find the config half written.
    """
    found = git.Repo(repository).config_reader().get_value("core", "sharedRepository", "")
    if str(found).lstrip("0") == "600":  # GitPython reads "0600" as the number 600
        return
    try:
        run(["git", "--git-dir", str(repository), "config", "core.sharedRepository", "0600"])
    except CommandError as e:
        raise GitError(
            f"could not make {repository} private: {e.message}",
            hint=f"check that {repository} is a git repository this user can write to",
        ) from e


def install_push_hook(repository: Path, hook: PushHook) -> None:
    """Make a push to ``repository`` notify the bridge, as GitHub's webhook would.

    The hook runs `deployments.post_receive` from the platform's installation
    (the interpreter that runs this, whose environment has the ``slipway``
    package installed), never from the directory this code was loaded from:
    a flow run's code is a checkout that is pruned later
    (`slipway.checkouts`). `slipway up` rewrites every local repository's hook
    at each start, so hooks follow the installation of the host serving them.

    The hook's settings file holds the secret, so it is rewritten readable by
    its owner only (0600), whatever mode an earlier one had; the hook script
    is the owner's alone too (0700). Both are replaced atomically: a push
    meanwhile runs the old hook or the new one, never half of one.

    Raises:
        ConfigurationError: This interpreter has no installed ``slipway``
            package for the hook to run.
    """
    write_private(
        repository / "slipway-hook.json",
        json.dumps(
            {
                "url": hook.bridge_url,
                "secret": hook.secret.get_secret_value(),
                "spool": str(hook.spool),
            }
        ),
    )
    keep_private(repository)
    write_private(repository / "hooks" / "post-receive", hook_script(), mode=0o700)


@functools.cache  # `up` installs it in every repository
def hook_script() -> str:
    """The post-receive hook: the installed platform's interpreter running its hook module.

    ``git push`` waits for the hook, so its interpreter starts isolated and
    without site-packages (``-IS``: 20 ms less, and the pusher's
    ``PYTHONPATH`` or working directory cannot replace the hook's code); the
    installation's source root is put on its path instead, and the hook
    module needs nothing but the standard library and the kernel.

    Called before a repository is made for a hook, so a missing installation
    is refused before anything exists.

    Raises:
        ConfigurationError: This interpreter has no installed ``slipway`` package.
    """
    root = _installation_root()
    return (
        f"#!{sys.executable} -IS\n"
        "# Installed by Slipway: tells the webhook bridge about this push.\n"
        "import sys\n"
        f"sys.path.insert(0, {str(root)!r})\n"
        "try:\n"
        "    from deployments.post_receive import main\n"
        "except Exception as e:  # never fail a push\n"
        "    print(f'slipway: push hook unavailable: {e}', file=sys.stderr)\n"
        "    raise SystemExit(0)\n"
        "raise SystemExit(main())\n"
    )


def _installation_root() -> Path:
    """Where this interpreter's installed ``slipway`` distribution keeps its packages.

    The project directory of an editable install (its ``direct_url.json``,
    PEP 610), else the site-packages directory it was installed into: never
    the directory this code was loaded from, which may be a run's checkout.

    Raises:
        ConfigurationError: No installed ``slipway``, or it has no hook module.
    """
    import sysconfig
    from importlib.metadata import distributions
    from urllib.parse import unquote, urlsplit

    # Its site-packages only: a working directory's slipway.egg-info is no installation.
    site = list(dict.fromkeys(sysconfig.get_path(p) for p in ("purelib", "platlib")))
    installed = next(iter(distributions(name="slipway", path=site)), None)
    if installed is None:
        raise ConfigurationError(
            f"the interpreter {sys.executable} has no installed slipway package, "
            "so a repository's push hook could not run it",
            hint="install the platform into it (`make python`, i.e. `pip install -e .`)",
        )
    direct = json.loads(installed.read_text("direct_url.json") or "{}")
    editable = bool(direct.get("dir_info", {}).get("editable"))
    root = Path(unquote(urlsplit(direct["url"]).path)) if editable else None
    root = root or Path(str(installed.locate_file("")))
    if not (root / "deployments" / "post_receive.py").is_file():
        raise ConfigurationError(
            f"the slipway package of {sys.executable} has no deployments/post_receive.py "
            f"under {root}, so a repository's push hook could not run it",
            hint="reinstall the platform (`make python`, i.e. `pip install -e .`)",
        )
    return root
