"""Prefect's settings are read from their sources once per set of inputs, and again when one changes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.context import SettingsContext
from prefect.settings import Settings
from prefect.settings.sources import PrefectTomlConfigSettingsSource

from slipway.prefect_patches import settings_memo


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[Path]]:
    """The working directory each real read of the settings files happened in; Prefect as upstream.

    Each ``Settings`` reads ``prefect.toml`` once per settings class (about 100).
    """
    upstream = getattr(Settings.__init__, "__wrapped__", Settings.__init__)
    monkeypatch.setattr(Settings, "__init__", upstream)  # undoes `apply`, here and after
    monkeypatch.setattr(settings_memo, "_MEMO", settings_memo._Memo())
    found: list[Path] = []
    real = PrefectTomlConfigSettingsSource.__init__

    def counting(self: PrefectTomlConfigSettingsSource, *args: object, **kwargs: object) -> None:
        found.append(Path.cwd())
        real(self, *args, **kwargs)

    monkeypatch.setattr(PrefectTomlConfigSettingsSource, "__init__", counting)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFECT_PROFILES_PATH", str(tmp_path / "profiles.toml"))
    yield found


def built_anew(reads: list[Path], make: object) -> bool:
    before = len(reads)
    assert callable(make)
    make()
    return len(reads) > before


def test_without_the_patch_every_settings_reads_every_source_again(reads):
    assert built_anew(reads, Settings) and built_anew(reads, Settings)


def test_the_same_inputs_are_read_once_and_give_equal_settings(reads):
    assert settings_memo.apply()
    assert settings_memo.apply()  # a second call wraps nothing twice
    first = Settings()
    assert not built_anew(reads, Settings)
    again = Settings()

    assert again == first and again.model_fields_set == first.model_fields_set
    assert again is not first and again.api is not first.api  # a copy each: changing one
    again.api.url = "http://127.0.0.1:9/api"  # changes no other
    assert Settings().api.url == first.api.url


def test_a_serialized_settings_context_is_hydrated_from_the_memo(reads):
    """What every flow run's process does, in Prefect's own `hydrated_context`."""
    assert settings_memo.apply()
    context = SettingsContext.get()
    assert context is not None
    serialized = context.serialize()
    first = SettingsContext(**serialized)

    assert not built_anew(reads, lambda: SettingsContext(**serialized))
    assert SettingsContext(**serialized).settings == first.settings
    assert built_anew(reads, lambda: Settings(**{**serialized["settings"], "debug_mode": True}))


def test_a_changed_environment_variable_is_read(reads, monkeypatch):
    assert settings_memo.apply()
    Settings()
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    assert built_anew(reads, Settings)
    assert Settings().api.url == "http://127.0.0.1:9/api"
    monkeypatch.setenv("prefect_api_url", "http://127.0.0.1:8/api")  # any case counts
    assert built_anew(reads, Settings)


def test_prefects_run_time_variables_are_not_settings_and_change_nothing(reads, monkeypatch):
    assert settings_memo.apply()
    Settings()
    monkeypatch.setenv("PREFECT__DEPLOYMENT_NAME", "probe")  # what the runner gives each run
    assert not built_anew(reads, Settings)
    names = {
        name.lower()
        for field in Settings.model_json_schema()["$defs"].values()
        for prop in field.get("properties", {}).values()
        for name in prop.get("supported_environment_variables", [])
    }
    assert len(names) > 300
    assert all(n.startswith("prefect_") and not n.startswith("prefect__") for n in names)


@pytest.mark.parametrize("name", ["prefect.toml", "pyproject.toml", ".env"])
def test_a_settings_file_written_in_the_working_directory_is_read(reads, tmp_path, name):
    assert settings_memo.apply()
    Settings()
    text = {
        "prefect.toml": '[logging]\nlevel = "DEBUG"\n',
        "pyproject.toml": '[tool.prefect.logging]\nlevel = "DEBUG"\n',
        ".env": "PREFECT_LOGGING_LEVEL=DEBUG\n",
    }[name]
    (tmp_path / name).write_text(text)

    assert built_anew(reads, Settings)
    assert Settings().logging.level == "DEBUG"


def test_another_working_directory_is_read(reads, tmp_path, monkeypatch):
    assert settings_memo.apply()
    Settings()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "prefect.toml").write_text('[logging]\nlevel = "ERROR"\n')
    monkeypatch.chdir(tmp_path / "other")

    assert Settings().logging.level == "ERROR"
    assert reads[-1] == tmp_path / "other"


def test_a_rewritten_profiles_file_is_read(reads, tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_LOGGING_LEVEL", raising=False)
    monkeypatch.delenv("PREFECT_TEST_MODE", raising=False)  # test mode ignores profiles
    monkeypatch.delenv("PREFECT_UNIT_TEST_MODE", raising=False)
    monkeypatch.delenv("PREFECT_TESTING_UNIT_TEST_MODE", raising=False)
    monkeypatch.delenv("PREFECT_TESTING_TEST_MODE", raising=False)
    profiles = tmp_path / "profiles.toml"
    profiles.write_text('active = "a"\n[profiles.a]\nPREFECT_LOGGING_LEVEL = "DEBUG"\n')
    assert settings_memo.apply()
    assert Settings().logging.level == "DEBUG"
    written = profiles.stat()

    profiles.write_text('active = "a"\n[profiles.a]\nPREFECT_LOGGING_LEVEL = "ERROR"\n')
    # Prefect's own cache of the file goes by its modification time (`_read_toml_file`)
    later = written.st_mtime_ns + 1_000_000_000
    os.utime(profiles, ns=(later, later))
    assert Settings().logging.level == "ERROR"


def test_primed_settings_are_what_a_run_started_by_prefect_asks_for(reads, monkeypatch):
    """`prime` builds the child's ``Settings()`` in the environment Prefect hands it."""
    from prefect.settings import get_current_settings

    settings_memo.prime()
    variables = get_current_settings().to_environment_variables(exclude_unset=True)
    for name, value in (variables | dict(os.environ)).items():  # as run_flow_in_subprocess
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PREFECT__ENABLE_CANCELLATION_AND_CRASHED_HOOKS", "false")
    context = SettingsContext.get()
    assert context is not None

    assert not built_anew(reads, Settings)
    assert not built_anew(reads, lambda: SettingsContext(**context.serialize()))


def test_a_settings_file_that_does_not_parse_fails_as_without_the_patch(reads, tmp_path):
    from pydantic_settings import SettingsError

    assert settings_memo.apply()
    (tmp_path / "prefect.toml").write_text("[logging\n")
    with pytest.raises(SettingsError, match="invalid TOML"):
        Settings()
