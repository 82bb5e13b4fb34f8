"""The ``post-receive`` hook of Slipway's bare repositories.

It makes the local git server a webhook source like GitHub: each pushed ref
becomes a GitHub-format push payload, signed with the platform's webhook
secret and POSTed to the bridge. It never blocks or fails a push: when the
bridge does not answer it saves the delivery in the spool, which the bridge
drains as soon as it runs again (`deployments.spool`), and exits 0. The
payload carries the push time (``repository.pushed_at``, as GitHub's does),
so a spooled push handed over late never counts as newer than a later one,
and the pusher: the operating-system user that ran the push (`pusher`).

Installed by `tasks.git.install_push_hook`, which writes ``slipway-hook.json``
(bridge URL, secret, spool directory; mode 0600) into the repository.

``git push`` waits for this hook, so it imports the standard library's light
parts only: the hook's interpreter starts without site-packages
(`tasks.push_hook.hook_script`), and the POST to the bridge goes over a plain
socket (`post`), since ``urllib.request`` pulls in the ``email`` package and
``ssl``, some 35 ms of every push. For the same reason it runs git with
`subprocess` itself, not through `slipway.process` (whose ``dataclasses``
import brings ``inspect``), and does not import ``typing``: together some
30 ms of the hook's 80 ms start.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pwd
import socket
import subprocess  # nosec B404 - git, with fixed arguments and no shell
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["HOOK_CONFIG", "ZERO_SHA", "main", "post", "push_payload", "pusher", "spool_delivery"]

HOOK_CONFIG = "slipway-hook.json"
"""File in the bare repository holding the hook's settings."""
ZERO_SHA = "0" * 40


def _git(repo: Path, *args: str) -> list[str]:
    done = subprocess.run(  # nosec B603 B607 - git from PATH, as git itself runs the hook
        ["git", "--git-dir", str(repo), *args],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return [line for line in done.stdout.splitlines() if line]


def push_payload(repo: Path, before: str, after: str, ref: str) -> dict[str, object]:
    """The payload GitHub would send for this ref update."""
    added: list[str] = []
    modified: list[str] = []
    removed: list[str] = []
    if after == ZERO_SHA:
        pass  # a deleted ref changes no file
    elif before == ZERO_SHA:
        added = _git(repo, "ls-tree", "-r", "--name-only", after)
    else:
        for line in _git(repo, "diff", "--name-status", "--no-renames", before, after):
            status, _, path = line.partition("\t")
            {"A": added, "D": removed}.get(status[:1], modified).append(path)
    name = repo.name.removesuffix(".git")
    return {
        "ref": ref,
        "before": before,
        "after": after,
        "created": before == ZERO_SHA,
        "deleted": after == ZERO_SHA,
        "repository": {"name": name, "full_name": f"local/{name}", "pushed_at": time.time()},
        "pusher": {"name": pusher()},
        "commits": []
        if after == ZERO_SHA
        else [{"id": after, "added": added, "modified": modified, "removed": removed}],
    }


def pusher() -> str:
    """Who pushed: the operating-system user that runs this hook, which is the one who pushed.

    Read from the process's real user id, never from ``USER``, ``LOGNAME`` or
    any other variable, which the pusher sets as they like. Over SSH, that is
    the account the key logged in to.
    """
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid without a passwd entry, e.g. in a container
        return f"uid:{uid}"


def spool_delivery(spool: Path, url: str, headers: dict[str, str], body: bytes) -> Path:
    """Keep a delivery for the bridge to take when it answers again; written atomically."""
    spool.mkdir(parents=True, exist_ok=True)
    path = spool / f"{headers['X-GitHub-Delivery']}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"url": url, "headers": headers, "body": body.decode()}))
    tmp.replace(path)
    return path


def post(url: str, headers: dict[str, str], body: bytes, *, timeout: float = 5) -> int:
    """POST ``body`` to the bridge's plain-http ``url`` and return the answer's status code.

    One HTTP/1.1 request with ``Connection: close``; only the status line is
    read. The bridge is on loopback and speaks plain http.

    Raises:
        OSError: The bridge cannot be reached, does not answer in time, or
            answers something that is not HTTP; the delivery is spooled.
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise OSError(f"the hook posts to plain http only, not {url!r}")
    target = parts.path or "/"
    lines = [f"POST {target}?{parts.query}" if parts.query else f"POST {target}"]
    lines[0] += " HTTP/1.1"
    fields = {"Host": parts.netloc, "Content-Length": str(len(body)), "Connection": "close"}
    lines += [f"{name}: {value}" for name, value in (fields | headers).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout) as conn:
        conn.sendall(request)
        status = conn.makefile("rb").readline(1024).split(None, 2)
    if len(status) < 2 or not status[0].startswith(b"HTTP/") or not status[1].isdigit():
        raise OSError(f"the bridge answered no HTTP status line: {b' '.join(status)[:80]!r}")
    return int(status[1])


def _deliver(config: dict[str, str], payload: dict[str, object]) -> None:
    body = json.dumps(payload).encode()
    signature = hmac.new(config["secret"].encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": f"sha256={signature}",
    }
    try:
        code = post(config["url"], headers, body)
    except OSError as e:  # timeouts too
        reason = type(e).__name__
    else:
        if code < 300:
            print(f"slipway: push to {payload['ref']} delivered ({code})", file=sys.stderr)
            return
        if code < 500:
            print(f"slipway: the bridge refused the push ({code}); not retried", file=sys.stderr)
            return
        reason = f"HTTP {code}"
    saved = spool_delivery(Path(config["spool"]), config["url"], headers, body)
    print(
        f"slipway: bridge unreachable ({reason}); saved {saved.name} for redelivery",
        file=sys.stderr,
    )


def main(stdin: list[str] | None = None) -> int:
    """Deliver every ``<old> <new> <ref>`` line git passes; always exit 0."""
    try:
        repo = Path(os.environ.get("GIT_DIR", ".")).resolve()
        config = json.loads((repo / HOOK_CONFIG).read_text())
        for line in stdin if stdin is not None else sys.stdin.read().splitlines():
            before, after, ref = line.split()
            _deliver(config, push_payload(repo, before, after, ref))
    except Exception as e:  # a hook must never fail the push, whatever went wrong
        print(f"slipway: push notification failed: {type(e).__name__}: {e}", file=sys.stderr)
    return 0
