"""The sandbox with real bubblewrap: what a confined process can and cannot reach."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from slipway import sandbox as sandbox_module
from slipway.errors import (
    CommandError,
    CommandNotFound,
    CommandTimeout,
    InvalidRequest,
    SandboxUnavailable,
)
from slipway.process import run
from slipway.sandbox import SANDBOX_UID, Forward, Sandbox
from tests.conftest import LOOPBACK_SECRET, Listener

PROBE = """
import json, os, socket, sys
found = {"uid": os.getuid(), "gid": os.getgid(), "env": dict(os.environ)}
found["caps"] = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0]
found["root"] = sorted(os.listdir("/"))
found["exists"] = {p: os.path.exists(p) for p in sys.argv[1:]}
print(json.dumps(found))
"""


def probe(box: Sandbox, *paths: str, env: dict[str, str] | None = None) -> dict[str, object]:
    done = box.run([sys.executable, "-c", PROBE, *paths], env=env)
    found: dict[str, object] = json.loads(done.stdout)
    return found


def test_a_sandboxed_process_is_nobody_without_capabilities_and_sees_only_what_it_was_given(
    tmp_path: Path,
) -> None:
    given = tmp_path / "checkout"
    given.mkdir()
    hidden = tmp_path / "platform-data"
    hidden.mkdir()
    found = probe(
        Sandbox(read_only=(given,)),
        str(given),
        str(hidden),
        "/etc/passwd",
        "/var/run/docker.sock",
        str(Path.home() / ".ssh"),
    )
    assert (found["uid"], found["gid"]) == (SANDBOX_UID, SANDBOX_UID)
    assert int(str(found["caps"]), 16) == 0
    assert found["exists"] == {
        str(given): True,
        str(hidden): False,
        "/etc/passwd": False,
        "/var/run/docker.sock": False,
        str(Path.home() / ".ssh"): False,
    }
    assert "etc" not in found["root"]  # type: ignore[operator]


def test_no_platform_variable_reaches_it_whatever_the_caller_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_secret_value")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-value")
    monkeypatch.setenv("SLIPWAY_HOME", "/srv/slipway")
    caller = {**os.environ, "LANG": "C.UTF-8", "CKV_TOKEN": "x", "CKV_SKIP": "true"}
    found = probe(Sandbox(passed_env=r"CKV_[A-Z_]+", env={"EXTRA": "1"}), env=caller)
    env = found["env"]
    assert isinstance(env, dict)
    output_settings = {k for k in env if k.startswith(("PYTHON", "LC_")) or k in ("TZ", "NO_COLOR")}
    assert set(env) - output_settings == {
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "PWD",
        "CKV_SKIP",
        "EXTRA",
    }
    assert "secret" not in json.dumps(env)


def test_it_cannot_reach_a_service_on_the_hosts_loopback(loopback_listener: Listener) -> None:
    code = (
        f"import urllib.request; urllib.request.urlopen('{loopback_listener.url}/api', timeout=3)"
    )
    done = Sandbox().run([sys.executable, "-c", code], check=False)
    assert done.returncode != 0 and "Connection refused" in done.stderr
    assert loopback_listener.hits == []
    with urllib.request.urlopen(f"{loopback_listener.url}/host", timeout=3) as answer:
        assert answer.read().decode() == LOOPBACK_SECRET  # the host still reaches it


def test_read_only_paths_stay_read_only_and_writable_ones_take_writes(tmp_path: Path) -> None:
    source, output = tmp_path / "src", tmp_path / "out"
    source.mkdir()
    output.mkdir()
    (source / "file").write_text("original")
    code = (
        "import sys\n"
        "open(sys.argv[2] + '/made', 'w').write('new')\n"
        "try:\n    open(sys.argv[1] + '/file', 'w').write('changed')\n"
        "except OSError as e:\n    print(type(e).__name__)\n"
    )
    done = Sandbox(read_only=(source,), writable=(output,)).run(
        [sys.executable, "-c", code, str(source), str(output)]
    )
    assert done.stdout.strip() == "OSError"
    assert (source / "file").read_text() == "original"
    assert (output / "made").read_text() == "new"


def test_a_forward_reaches_exactly_one_host_socket(tmp_path: Path) -> None:
    path = tmp_path / "service.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()

    def answer() -> None:
        conn, _ = server.accept()
        conn.sendall(b"echo:" + conn.recv(64))
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    code = (
        "import socket; s = socket.create_connection(('127.0.0.1', 8765), timeout=5);"
        "s.sendall(b'hi'); print(s.recv(64).decode())"
    )
    done = Sandbox(forwards=(Forward(8765, path),)).run([sys.executable, "-c", code])
    server.close()
    assert done.stdout.strip() == "echo:hi"


def test_every_command_run_inside_applied_is_confined_and_named_as_itself(tmp_path: Path) -> None:
    with Sandbox().applied():
        done = run(["cat", "/etc/hostname"], check=False)
        with pytest.raises(CommandError) as failed:
            run(["cat", "/etc/hostname"])
    assert done.argv == ("cat", "/etc/hostname") and done.returncode == 1
    assert "No such file" in done.stderr
    assert str(failed.value).startswith("`cat /etc/hostname` exited with 1")
    assert run(["cat", "/etc/hostname"], check=False).returncode == 0  # outside: the host's file


def test_a_command_that_hangs_is_killed_and_one_that_is_missing_is_named(tmp_path: Path) -> None:
    with pytest.raises(CommandTimeout, match="did not finish within 1 s in its sandbox"):
        Sandbox().run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=1)
    with pytest.raises(CommandNotFound, match="no-such-tool` is not installed"):
        Sandbox().run([str(tmp_path / "no-such-tool")])


def test_a_path_to_mount_that_does_not_exist_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    with pytest.raises(CommandError, match="does not exist"):
        Sandbox(writable=(tmp_path / "missing",)).run(["true"])


def test_without_bubblewrap_nothing_runs_and_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sandbox_module._working_bwrap.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path))
    try:
        with pytest.raises(SandboxUnavailable, match=r"apt-get install bubblewrap"):
            Sandbox().run(["true"])
    finally:
        monkeypatch.undo()
        sandbox_module._working_bwrap.cache_clear()
    assert Sandbox().run(["true"]).returncode == 0


NICENESS_PROBE = """
import os, sys
group = open("/proc/self/autogroup").read().split() if os.path.exists("/proc/self/autogroup") else []
print(os.nice(0), group[-1] if group else "none")
sys.exit(3)
"""


def test_a_niced_sandbox_yields_the_cores_also_where_the_kernel_shares_them_by_session() -> None:
    done = Sandbox(niceness=10).run([sys.executable, "-c", NICENESS_PROBE], check=False)
    assert done.argv[:2] == (sys.executable, "-c") and done.returncode == 3  # as itself, exec'd
    nice, group = done.stdout.split()
    assert int(nice) == os.nice(0) + 10
    # bwrap's --new-session makes a new autogroup; with autogroup scheduling
    # on, a nice value counts only inside it, so the group itself is lowered.
    autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled")
    if autogroup.exists() and autogroup.read_text().strip() == "1":
        assert group == "10"
    unniced = Sandbox().run([sys.executable, "-c", NICENESS_PROBE], check=False).stdout.split()
    assert int(unniced[0]) == os.nice(0)
    assert unniced[1] in ("0", "none")


def test_a_niceness_outside_what_nice_takes_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="niceness must be 0 to 19"):
        Sandbox(niceness=20)
