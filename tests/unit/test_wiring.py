"""The settings the mapping core reads are the ``Settings`` of the same name, with the same defaults: declared
once, in ``MappingConfig``, and derived by ``Settings``."""

from __future__ import annotations

from dataclasses import fields

import pytest

from streams.errors import ConfigError
from streams.mapping import MappingConfig
from streams.model import ProjectType
from streams.settings import MAPPING_OPTIONS, Settings
from streams.wiring import build_mapping_config


def test_every_mapping_option_is_a_setting_with_the_same_default() -> None:
    settings = Settings.model_fields
    for option in fields(MappingConfig):
        if option.name == "transformations":
            assert "transformations_file" in settings
            continue
        assert option.name in settings, f"MappingConfig.{option.name} has no FPI_{option.name.upper()} setting"
        assert settings[option.name].get_default(call_default_factory=True) == getattr(MappingConfig(), option.name)


def test_a_mapping_option_is_declared_once() -> None:
    again = sorted(set(Settings.__annotations__) & set(MAPPING_OPTIONS))
    assert not again, (f"declared again in Settings: {again}; a mapping option is declared once, in "
                       "streams/mapping/config.py (MappingConfig), and Settings derives FPI_<NAME> from it")


def test_the_core_declarations_bounds_and_types_hold_for_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FPI_DATE_FIELDS", '["trial_ends"]')
    monkeypatch.setenv("FPI_PROJECT_TYPE", "userId")
    assert Settings.load().mapping_config() == MappingConfig(project_type=ProjectType.USER_ID,
                                                             date_fields=frozenset({"trial_ends"}))
    monkeypatch.setenv("FPI_CART_MAX_ITEMS", "1001")
    monkeypatch.setenv("FPI_PUSH_IOS_PLATFORM", "GCM")
    with pytest.raises(ConfigError) as info:
        Settings.load()
    assert "invalid FPI_CART_MAX_ITEMS='1001': Input should be less than or equal to 1000" in str(info.value)
    assert "invalid FPI_PUSH_IOS_PLATFORM='GCM'" in str(info.value)


def test_settings_reach_the_mapping_config() -> None:
    settings = Settings(project_type=ProjectType.HYBRID, page_event_name="Seen", date_fields=("trial_ends",),
                        merge_nested_objects=True)
    config = build_mapping_config(settings)
    assert (config.project_type, config.page_event_name, config.date_fields, config.merge_nested_objects) == (
        ProjectType.HYBRID, "Seen", frozenset({"trial_ends"}), True)
