"""The delivery benches' common yardstick: a plain script, and one poller that times both sides.

``bench/delivery.py`` (the flow called in-process) and
``bench/push_to_healthy.py`` (a `git push` to a running `slipway up`) judge
the platform against the same baseline: a bash script doing by hand what
build-test-deploy does. Both sides are timed by the same outside poller of
``/healthz`` (`HealthWatch`), so neither gains from its own polling interval.
"""

from __future__ import annotations

import os
import signal
import subprocess  # nosec B404 - the baseline script and the docker CLI, as a user runs them
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from deployments.registry_auth import RegistryLogin

__all__ = [
    "PLAIN_SCRIPT",
    "HealthWatch",
    "PlainDelivery",
    "Timing",
    "check_serving",
    "docker_login",
    "plain_delivery",
]

PLAIN_SCRIPT = r"""
set -euo pipefail
repo=$1 sha=$2 tag=$3 base=$4 name=$5 port=$6 work=$7 timeout=$8 wheelhouse=$9 replace=${10}
confined=(--user 65534 --cap-drop ALL --security-opt no-new-privileges:true --read-only
    --tmpfs /tmp:rw,nosuid,nodev,noexec,size=64m --memory 512m --memory-swap 512m
    --cpus 1 --pids-limit 256)
echo "step started $EPOCHREALTIME" >&2
git clone --quiet --no-checkout "$repo" "$work/src"
git -C "$work/src" checkout --quiet --detach --force "$sha"
cp -r "$wheelhouse" "$work/src/.wheelhouse"
echo "step checked out $EPOCHREALTIME" >&2
docker build --quiet --network none --build-arg "BASE_IMAGE=$base" \
    --label "org.opencontainers.image.revision=$sha" \
    --label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%S+00:00)" \
    --tag "$tag" "$work/src" >/dev/null
echo "step built $EPOCHREALTIME" >&2
docker run --rm --network none "${confined[@]}" --label "dev.slipway.service=$name" \
    -e PYTHONDONTWRITEBYTECODE=1 "$tag" python3 -m unittest -v
echo "step tested $EPOCHREALTIME" >&2
docker push --quiet "$tag" >/dev/null
echo "step pushed $EPOCHREALTIME" >&2
if [[ $replace == 1 ]]; then docker rm --force "$name" >/dev/null; fi
docker run --detach --name "$name" --network host "${confined[@]}" \
    --label "dev.slipway.service=$name" \
    -e HOST=127.0.0.1 -e "PORT=$port" -e "GIT_SHA=$sha" "$tag" >/dev/null
echo "step container started $EPOCHREALTIME" >&2
deadline=$((SECONDS + timeout))
until curl --fail --silent --output /dev/null --max-time 2 "http://127.0.0.1:$port/healthz"; do
    if ((SECONDS >= deadline)); then echo "$name not healthy after $timeout s" >&2; exit 1; fi
    sleep 0.2
done
echo "step answered $EPOCHREALTIME" >&2
"""
"""The baseline; every value arrives as a positional argument, never as shell text.

It notes the wall-clock time after each step on stderr (``step NAME TIME``).

With ``replace`` 1 it stops the container already serving first, as a plain
redeploy of a new commit does (the platform's blue-green keeps it serving).
"""


@dataclass(frozen=True)
class Timing:
    """One delivery, timed from its start."""

    healthy: float
    """Until an outside poller first got the new sha from /healthz: the lead time."""
    finished: float
    """Until the script or flow returned (the flow still records and releases its slot)."""
    steps: dict[str, float] = field(default_factory=dict)
    """When each step ended, wall clock (the plain script's; empty for the flow)."""


class HealthWatch:
    """Polls a service's /healthz every 20 ms and notes when ``sha`` first answers.

    Both sides are timed by the same poller, so neither gains from its own
    polling interval. ``began`` and `seen` are `time.monotonic` readings.
    """

    def __init__(self, port: int, sha: str, began: float) -> None:
        self.url = f"http://127.0.0.1:{port}/healthz"
        self.sha = sha
        self.began = began
        self.seen: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        with httpx.Client(timeout=1, trust_env=False) as http:
            while not self._stop.is_set():
                try:
                    answer = http.get(self.url)
                    if answer.status_code == 200 and answer.json().get("version") == self.sha:
                        self.seen = time.monotonic()
                        return
                except (httpx.HTTPError, ValueError):
                    pass
                self._stop.wait(0.02)

    def wait(self, timeout: float) -> float:
        """Seconds from ``began`` to the first healthy answer, waiting up to ``timeout`` for it."""
        self._thread.join(timeout=timeout)
        return self.seconds()

    def seconds(self) -> float:
        """Seconds from ``began`` to the first healthy answer; fails the bench if there was none."""
        self._thread.join(timeout=5)
        self._stop.set()
        if self.seen is None:
            raise SystemExit(f"{self.url} never answered with {self.sha[:12]}")
        return self.seen - self.began


def check_serving(port: int, sha: str) -> None:
    """Refuse a figure for a run that did not end with ``sha`` serving."""
    answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5, trust_env=False)
    if answer.status_code != 200 or answer.json().get("version") != sha:
        raise SystemExit(f"port {port} does not serve {sha[:12]}: {answer.text[:300]}")


def docker_login(registry: str, login: RegistryLogin, config: Path) -> Path:
    """A docker CLI config in ``config`` logged in to ``registry``, as a user's would be.

    The registry requires a login; the platform's engine logs in once per
    process, so the baseline logs in once too, before anything is timed, into a
    config of its own that leaves the user's ~/.docker alone.
    """
    if not (config / "config.json").is_file():
        config.mkdir(mode=0o700, exist_ok=True)
        subprocess.run(
            [*("docker", "login", registry, "--password-stdin", "--username", login.username)],
            input=login.password.get_secret_value(),
            env=os.environ | {"DOCKER_CONFIG": str(config)},
            check=True,
            capture_output=True,
            text=True,
        )
    return config


@dataclass(frozen=True)
class PlainDelivery:
    """What the plain script delivers, and where it works."""

    repository: str
    """What ``git clone`` takes."""
    sha: str
    tag: str
    """The image reference it builds and pushes."""
    base_image: str
    service: str
    port: int
    work: Path
    """An empty directory of its own."""
    wheelhouse: Path
    """The template's wheelhouse, fetched before anything is timed, as the flow caches it."""
    docker_host: str
    docker_config: Path
    """A docker CLI config logged in to the registry (`docker_login`)."""
    replace: bool = False
    """Whether a container of the service serves already and must go first."""


def plain_delivery(job: PlainDelivery, *, began: float, timeout: float) -> Timing:
    """Run the plain script; times from ``began`` (a `time.monotonic` reading) to healthy and return."""
    watch = HealthWatch(job.port, job.sha, began)
    argv = [
        *("plain-delivery", job.repository, job.sha, job.tag, job.base_image, job.service),
        *(str(job.port), str(job.work), str(int(timeout)), str(job.wheelhouse)),
        "1" if job.replace else "0",
    ]
    env = os.environ | {
        "DOCKER_BUILDKIT": "0",
        "DOCKER_HOST": job.docker_host,
        "DOCKER_CONFIG": str(job.docker_config),
    }
    script = subprocess.Popen(
        ["bash", "-c", PLAIN_SCRIPT, *argv],  # noqa: S607 - bash from PATH, as a user runs it
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, errors = script.communicate()
    except BaseException:
        os.killpg(script.pid, signal.SIGKILL)  # its docker CLI too; the caller removes containers
        script.wait()
        raise
    seconds = time.monotonic() - began
    if script.returncode != 0:
        raise SystemExit(f"the plain script failed ({script.returncode}):\n{errors[-3000:]}")
    check_serving(job.port, job.sha)
    steps = {
        name: float(stamp)
        for line in errors.splitlines()
        if line.startswith("step ")
        for name, _, stamp in [line.removeprefix("step ").rpartition(" ")]
    }
    return Timing(watch.seconds(), seconds, steps)
