"""The post-receive hook's hand-over to the bridge: what each answer makes of the push."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from deployments.post_receive import main, post

ZERO = "0" * 40


class _Bridge(http.server.BaseHTTPRequestHandler):
    """Answers every POST with the class's ``status``; keeps what it got."""

    status = 202
    received: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, dict(self.headers), body))
        self.send_response(self.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def bridge() -> Iterator[tuple[str, type[_Bridge]]]:
    handler = type("Bridge", (_Bridge,), {"received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/github?x=1", handler
    finally:
        server.shutdown()
        server.server_close()


def _repository(tmp_path: Path, url: str) -> Path:
    repo = tmp_path / "svc.git"
    repo.mkdir()
    config = {"url": url, "secret": "s3cret", "spool": str(tmp_path / "spool")}
    (repo / "slipway-hook.json").write_text(json.dumps(config))
    return repo


def _push(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_DIR", str(repo))
    assert main([f"{ZERO} {ZERO} refs/heads/main"]) == 0  # a deleted ref: no git needed


def test_an_accepted_push_is_signed_and_not_spooled(bridge, tmp_path, monkeypatch, capsys):
    import hashlib
    import hmac

    url, handler = bridge
    repo = _repository(tmp_path, url)
    _push(repo, monkeypatch)
    [(path, headers, body)] = handler.received
    assert path == "/hooks/github?x=1"
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature-256"] == f"sha256={expected}"
    assert headers["X-GitHub-Event"] == "push" and headers["Host"] == url.split("/")[2]
    assert json.loads(body)["ref"] == "refs/heads/main"
    assert "delivered (202)" in capsys.readouterr().err
    assert not (tmp_path / "spool").exists()


@pytest.mark.parametrize(("status", "spooled"), [(400, False), (401, False), (503, True)])
def test_a_refusal_is_final_and_a_server_error_is_spooled(
    bridge, tmp_path, monkeypatch, capsys, status, spooled
):
    url, handler = bridge
    handler.status = status
    _push(_repository(tmp_path, url), monkeypatch)
    err = capsys.readouterr().err
    assert len(list((tmp_path / "spool").glob("*.json"))) == int(spooled)
    assert ("for redelivery" in err) is spooled and ("refused" in err) is not spooled


def test_an_answer_that_is_not_http_is_spooled(tmp_path, monkeypatch, capsys):
    listener = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"SSH-2.0-OpenSSH\r\n")

    threading.Thread(target=answer, daemon=True).start()
    with listener:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hooks/github"
        _push(_repository(tmp_path, url), monkeypatch)
    assert "for redelivery" in capsys.readouterr().err
    assert len(list((tmp_path / "spool").glob("*.json"))) == 1


def test_only_plain_http_is_posted_to() -> None:
    with pytest.raises(OSError, match="plain http only"):
        post("https://127.0.0.1:1/hooks/github", {}, b"{}")
