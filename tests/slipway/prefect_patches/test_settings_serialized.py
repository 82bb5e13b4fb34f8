"""The runner's unchanged settings are serialized once for all the runs it starts, and again on a change."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prefect.context import ContextModel, SettingsContext
from prefect.settings import PREFECT_LOGGING_LEVEL, Settings
from prefect.settings.base import PrefectBaseSettings

from slipway.prefect_patches import settings_serialized


@pytest.fixture
def serialized(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Each real serialization of a whole settings object; Prefect as upstream, undone after."""
    for kind, names in (
        (PrefectBaseSettings, ("__setattr__", "__delattr__")),
        (SettingsContext, ("__setattr__", "__delattr__", "serialize")),
        (Settings, ("to_environment_variables",)),
    ):
        for name in names:
            method = getattr(kind, name)
            monkeypatch.setattr(kind, name, getattr(method, "__wrapped__", method))
    monkeypatch.setattr(settings_serialized, "_RESULTS", settings_serialized._Results())
    found: list[str] = []
    dump = PrefectBaseSettings.model_dump

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        if type(self) is Settings:
            found.append(kwargs.get("mode", "python"))
        return dump(self, *args, **kwargs)

    monkeypatch.setattr(PrefectBaseSettings, "model_dump", counting)
    context_serialize = ContextModel.serialize

    def counting_context(self: Any, *args: Any, **kwargs: Any) -> Any:
        if type(self) is SettingsContext:
            found.append("context")
        return context_serialize(self, *args, **kwargs)

    monkeypatch.setattr(ContextModel, "serialize", counting_context)
    yield found


def test_without_the_patch_each_run_serializes_the_settings_again(serialized):
    settings = Settings()
    settings.to_environment_variables(exclude_unset=True)
    settings.to_environment_variables(exclude_unset=True)
    assert len(serialized) == 2


def test_unchanged_settings_are_serialized_once_and_give_equal_copies(serialized):
    assert settings_serialized.apply()
    assert settings_serialized.apply()  # a second call wraps nothing twice
    settings = Settings()
    first = settings.to_environment_variables(exclude_unset=True)
    again = settings.to_environment_variables(exclude_unset=True)

    assert len(serialized) == 1
    assert again == first and again is not first
    again["PREFECT_API_URL"] = "changed by a caller"
    assert settings.to_environment_variables(exclude_unset=True) == first
    settings.to_environment_variables(exclude_unset=False)  # other arguments: their own
    assert len(serialized) == 2


def test_an_assignment_to_any_settings_serializes_again(serialized):
    assert settings_serialized.apply()
    settings = Settings()
    settings.to_environment_variables()
    settings.api.url = "http://127.0.0.1:9/api"  # a nested settings object changed in place

    assert settings.to_environment_variables()["PREFECT_API_URL"] == "http://127.0.0.1:9/api"
    assert len(serialized) == 2


def test_other_settings_are_serialized_for_themselves(serialized):
    assert settings_serialized.apply()
    Settings().to_environment_variables()
    other = Settings(debug_mode=True)

    assert other.to_environment_variables()["PREFECT_DEBUG_MODE"] == "True"


def test_a_settings_context_is_serialized_once_while_its_profile_is_unchanged(
    serialized, monkeypatch
):
    assert settings_serialized.apply()
    context = SettingsContext.get()
    assert context is not None
    monkeypatch.setattr(context.profile, "settings", dict(context.profile.settings))
    first = context.serialize()
    assert context.serialize() == first
    assert len(serialized) == 1

    context.profile.settings[PREFECT_LOGGING_LEVEL] = "DEBUG"  # a profile changed in place
    assert context.serialize() != first
    assert len(serialized) == 2
