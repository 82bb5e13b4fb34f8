"""From a service going down to its team's notification, with the default intervals.

The real path on loopback: Debian's Prometheus, Alertmanager and blackbox
exporter with the config `slipway up` writes from the default Monitoring
block, the monitor (receiver), a Prefect server whose automation sends
through the team's Custom Webhook block to a local HTTP receiver. A
container of the release contract is stopped; the clock runs until the
``[FIRING]`` notification arrives. Each run is split into:

- scrape: stop -> the first failed probe Prometheus stored;
- rule ``for:``: that sample -> Alertmanager holds the firing alert
  (evaluation alignment plus the rule's ``for``);
- delivery: Alertmanager -> notification received (group wait, receiver,
  Prefect event, automation, webhook).

Baseline, measured in the same run: the delivery path alone (an alert POSTed
straight to the monitor, as Alertmanager does, until the notification
arrives), so the ratio says how much of the total is detection.

Goal (issue 23): median 30 s or less with the defaults.

    python bench/alerting.py [--runs 5] [--check]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

import httpx  # noqa: E402

from blocks.monitoring import MonitoringSettings  # noqa: E402
from testkit.monitoring import (  # noqa: E402
    Stack,
    WebhookReceiver,
    monitoring_stack,
    run_service_container,
)
from testkit.platform import wait_for  # noqa: E402

GOAL_SECONDS = 30.0


def first_failed_probe(stack: Stack, service: str, after: float) -> float:
    """When Prometheus stored the first failed probe of ``service`` after ``after`` (Unix time)."""
    samples = stack.query(f'probe_success{{service="{service}"}}[2m]')[0]["values"]
    return min(float(t) for t, v in samples if v == "0" and float(t) >= after)


def alert_in_alertmanager(stack: Stack, service: str) -> bool:
    response = httpx.get(
        f"{stack.layout.alertmanager_url}/api/v2/alerts",
        params=[("filter", f'service="{service}"'), ("active", "true")],
        auth=stack.layout.basic_auth(),
        timeout=2,
    )
    return any(a["labels"].get("alertname") == "SlipwayServiceDown" for a in response.json())


def one_run(
    stack: Stack, container: object, service: str, receiver: WebhookReceiver
) -> dict[str, float]:
    seen = len(receiver.received)
    wait_for(
        lambda: stack.query(f'probe_success{{service="{service}"}} == 1'),
        timeout=120,
        what="the service probed healthy",
    )
    stopped_wall, stopped = time.time(), time.monotonic()
    container.stop(timeout=1)  # type: ignore[attr-defined]
    wait_for(
        lambda: alert_in_alertmanager(stack, service), timeout=120, what="the alert", poll=0.05
    )
    in_manager = time.monotonic()
    notified = wait_for(
        lambda: next(
            (t for t, b in receiver.received[seen:] if b.get("subject", "").startswith("[FIRING]")),
            None,
        ),
        timeout=120,
        what="the notification",
        poll=0.02,
    )
    scrape = first_failed_probe(stack, service, stopped_wall) - stopped_wall
    container.start()  # type: ignore[attr-defined]
    wait_for(
        lambda: any(
            b.get("subject", "").startswith("[RESOLVED]") for _, b in receiver.received[seen:]
        ),
        timeout=180,
        what="the resolved notification",
    )
    total = notified - stopped
    return {
        "total": total,
        "scrape": scrape,
        "for": in_manager - stopped - scrape,
        "delivery": notified - in_manager,
    }


def delivery_baseline(stack: Stack, receiver: WebhookReceiver, team: str) -> float:
    """An alert POSTed to the monitor as Alertmanager does, until its notification arrives."""
    seen, name = len(receiver.received), f"Baseline{uuid.uuid4().hex[:6]}"
    token = stack.layout.receiver_token().get_secret_value()
    body = {
        "version": "4",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": name, "team": team, "audience": "team"},
                "annotations": {"summary": name},
                "startsAt": "2026-01-01T00:00:00Z",
                "fingerprint": uuid.uuid4().hex,
            }
        ],
    }
    began = time.monotonic()
    httpx.post(
        f"{stack.layout.monitor_url}/alerts",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).raise_for_status()
    arrived = wait_for(
        lambda: next(
            (t for t, b in receiver.received[seen:] if name in b.get("subject", "")), None
        ),
        timeout=60,
        what="the baseline notification",
        poll=0.02,
    )
    return float(arrived) - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--check", action="store_true", help="exit 1 when the goal is missed")
    args = parser.parse_args()

    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from blocks import register_block_types
    from tasks.containers import docker_client
    from tasks.monitoring.automations import ensure_notification_automations
    from tasks.monitoring.targets import ServiceTarget, write_targets

    settings = MonitoringSettings()  # the defaults are what is measured
    image = os.environ.get("SLIPWAY_BASE_IMAGE", "local/python-base:bookworm")
    team, service = "bench", f"bench-{uuid.uuid4().hex[:6]}"
    with ExitStack() as stack_of, tempfile.TemporaryDirectory(prefix="slipway-bench-") as tmp:
        stack_of.enter_context(prefect_test_harness(server_startup_timeout=120))
        register_block_types()
        receiver = WebhookReceiver()
        stack_of.callback(receiver.close)
        CustomWebhookNotificationBlock(
            name=team, url=receiver.url, json_data={"subject": "{{subject}}", "body": "{{body}}"}
        ).save(f"team-{team}", overwrite=True)
        ensure_notification_automations("http://127.0.0.1:4200")
        stack = stack_of.enter_context(
            monitoring_stack(Path(tmp), api_url=str(PREFECT_API_URL.value()), settings=settings)
        )
        from testkit.platform import free_port

        port = free_port()
        client = docker_client(__import__("blocks").DeployTarget())
        container = run_service_container(client, image, service, "dev", port)
        stack_of.callback(container.remove, force=True)
        write_targets(
            stack.layout, [ServiceTarget(service, "dev", "0" * 40, team, f"127.0.0.1:{port}")]
        )
        print(
            f"defaults: scrape {settings.scrape_interval_seconds:g} s, rules every "
            f"{settings.evaluation_interval_seconds:g} s, down for {settings.down_for_seconds:g} s, "
            f"group wait {settings.group_wait_seconds:g} s"
        )
        baseline = statistics.median(delivery_baseline(stack, receiver, team) for _ in range(3))
        runs = []
        print(f"{'run':>4} {'total s':>8} {'scrape s':>9} {'for s':>7} {'delivery s':>11}")
        for number in range(1, args.runs + 1):
            run = one_run(stack, container, service, receiver)
            runs.append(run)
            print(
                f"{number:>4} {run['total']:>8.1f} {run['scrape']:>9.1f} {run['for']:>7.1f} "
                f"{run['delivery']:>11.2f}"
            )
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    shares = ", ".join(
        f"{k} {median[k]:.1f} s ({median[k] / median['total']:.0%})"
        for k in ("scrape", "for", "delivery")
    )
    print(f"median: {median['total']:.1f} s down -> notified; {shares}")
    print(
        f"baseline (delivery path alone, same run): {baseline:.2f} s; "
        f"ratio total/baseline {median['total'] / baseline:.1f}x"
    )
    met = median["total"] <= GOAL_SECONDS
    print(f"goal {GOAL_SECONDS:.0f} s: {'met' if met else 'MISSED'}")
    return 0 if met or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
