"""The monitoring settings' ``ui_url`` follows the embedded Prefect UI, and only Slipway's value.

Against a real Prefect server: `follow_embedded_prefect_ui` reads and saves
the ``default`` monitoring settings; the previous start is the record it left
under ``<home>/run``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from blocks import DEFAULT_DOCUMENT
from blocks.monitoring import MonitoringSettings
from deployments.monitoring import follow_embedded_prefect_ui
from slipway.errors import ConfigurationError
from slipway.home import Ports, SlipwayHome
from testkit.platform import free_port


@pytest.fixture
def monitoring_block(prefect_server: str) -> Iterator[None]:
    """Put the session's monitoring settings back afterwards: other tests read them."""
    try:
        kept: MonitoringSettings | None = MonitoringSettings.load_default()
    except ConfigurationError:  # none yet
        kept = None
    yield
    if kept is not None:
        kept.save(DEFAULT_DOCUMENT, overwrite=True)


def home_of(tmp_path: Path) -> SlipwayHome:
    home = SlipwayHome(tmp_path / "home")
    home.run.mkdir(parents=True)
    return home


def ui(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def test_the_default_follows_prefect_to_its_new_port_at_each_start(
    monitoring_block: None, tmp_path: Path
) -> None:
    home, before, now = home_of(tmp_path), free_port(), free_port()
    MonitoringSettings.local_default(home, Ports(prefect=before)).save(
        DEFAULT_DOCUMENT, overwrite=True
    )
    assert follow_embedded_prefect_ui(home, ui(before)) is None  # the first start

    note = follow_embedded_prefect_ui(home, ui(now))

    assert MonitoringSettings.load_default().ui_url == ui(now)
    assert note is not None and f"from {ui(before)} to {ui(now)}" in note
    assert follow_embedded_prefect_ui(home, ui(now)) is None  # the next start changes nothing
    public = "https://prefect.example.com"  # a start behind a public URL: links go there
    assert follow_embedded_prefect_ui(home, f"{public}/") is not None
    assert MonitoringSettings.load_default().ui_url == public


def test_a_home_from_before_the_record_follows_from_its_loopback_default(
    monitoring_block: None, tmp_path: Path
) -> None:
    home, now = home_of(tmp_path), free_port()
    MonitoringSettings(ui_url=ui(free_port())).save(DEFAULT_DOCUMENT, overwrite=True)

    assert follow_embedded_prefect_ui(home, ui(now)) is not None

    assert MonitoringSettings.load_default().ui_url == ui(now)


@pytest.mark.parametrize("recorded", [True, False])
def test_a_ui_url_the_platform_team_chose_is_left_alone_when_the_port_moves(
    monitoring_block: None, tmp_path: Path, recorded: bool
) -> None:
    home, before, now = home_of(tmp_path), free_port(), free_port()
    if recorded:
        follow_embedded_prefect_ui(home, ui(before))  # the previous start's record
    chosen = "https://prefect.acme.internal/ui"
    MonitoringSettings(ui_url=chosen, retention_days=30).save(DEFAULT_DOCUMENT, overwrite=True)

    assert follow_embedded_prefect_ui(home, ui(now)) is None

    kept = MonitoringSettings.load_default()
    assert (kept.ui_url, kept.retention_days) == (chosen, 30)
