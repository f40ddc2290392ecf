"""The settings the mapping core reads are the ``Settings`` of the same name, with the same defaults."""

from __future__ import annotations

from dataclasses import MISSING, fields

from streams.mapping import MappingConfig
from streams.model import ProjectType
from streams.settings import Settings
from streams.wiring import build_mapping_config


def test_every_mapping_option_is_a_setting_with_the_same_default() -> None:
    settings = Settings.model_fields
    for option in fields(MappingConfig):
        if option.name == "transformations":
            assert "transformations_file" in settings
            continue
        assert option.name in settings, f"MappingConfig.{option.name} has no FPI_{option.name.upper()} setting"
        default = option.default if option.default is not MISSING else option.default_factory()  # type: ignore[misc]
        assert type(default)(settings[option.name].default) == default, option.name


def test_settings_reach_the_mapping_config() -> None:
    settings = Settings(project_type=ProjectType.HYBRID, page_event_name="Seen", date_fields=("trial_ends",),
                        merge_nested_objects=True)
    config = build_mapping_config(settings)
    assert (config.project_type, config.page_event_name, config.date_fields, config.merge_nested_objects) == (
        ProjectType.HYBRID, "Seen", frozenset({"trial_ends"}), True)
