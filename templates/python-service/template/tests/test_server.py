"""The service answers /healthz and / on a free loopback port.

Written with unittest so it runs with ``python3 -m unittest`` inside the image,
which has no pip, and unchanged under pytest.
"""

from __future__ import annotations

import json
import os
import threading
import unittest
import urllib.error
import urllib.request

from app.server import load_service, make_server


class ServerTest(unittest.TestCase):
    """Start the real server in a thread and talk HTTP to it."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.service = load_service()
        cls.server = make_server("127.0.0.1", 0, cls.service)
        cls.base = f"http://127.0.0.1:{cls.server.server_address[1]}"
        cls.thread = threading.Thread(target=cls.server.serve_forever, daemon=True)
        cls.thread.start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.shutdown()
        cls.server.server_close()
        cls.thread.join(timeout=5)

    def get(self, path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as response:
                return response.status, json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read().decode("utf-8"))

    def test_healthz_reports_ok_with_name_and_version(self) -> None:
        status, body = self.get("/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(body["status"], "ok")
        self.assertEqual(body["service"], self.service["service"])
        self.assertEqual(body["version"], os.environ.get("GIT_SHA", "dev"))

    def test_root_describes_the_service(self) -> None:
        status, body = self.get("/")
        self.assertEqual(status, 200)
        self.assertEqual(body["service"], self.service["service"])
        self.assertEqual(body["description"], self.service["description"])

    def test_unknown_path_is_404(self) -> None:
        status, body = self.get("/nope")
        self.assertEqual(status, 404)
        self.assertEqual(body["error"], "not found")


if __name__ == "__main__":
    unittest.main()
