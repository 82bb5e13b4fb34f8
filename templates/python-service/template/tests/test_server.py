"""The service answers /healthz, / and /metrics on a free loopback port.

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

from app import metrics
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

    def get_raw(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as response:
                return response.status, response.read().decode("utf-8")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8")

    def get(self, path: str) -> tuple[int, dict]:
        status, text = self.get_raw(path)
        return status, json.loads(text)

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

    def test_metrics_count_requests_by_route_and_status(self) -> None:
        self.get("/")
        self.get("/no/such/page")
        status, text = self.get_raw("/metrics")
        if not metrics.AVAILABLE:  # an image built without requirements.txt
            self.assertEqual(status, 503)
            self.assertIn("prometheus-client is not installed", text)
            return
        self.assertEqual(status, 200)
        self.assertRegex(
            text, r'http_requests_total\{method="GET",route="/",status="200"\} [1-9]'
        )
        self.assertRegex(
            text, r'http_requests_total\{method="GET",route="other",status="404"\} [1-9]'
        )
        self.assertIn('http_request_duration_seconds_bucket{le="0.005",method="GET",route="/"}', text)
        self.assertNotIn("/no/such/page", text)


if __name__ == "__main__":
    unittest.main()
