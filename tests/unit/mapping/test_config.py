from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import ConfigError
from streams.mapping import MappingConfig, load_mapping_config
from streams.model import ProjectType
from streams.settings import Settings


class TestMappingConfig:
    def test_defaults_match_settings(self) -> None:
        config, settings = MappingConfig(), Settings()
        for name in (
            "project_type",
            "default_identify_transformations",
            "require_identify_first",
            "merge_nested_objects",
            "page_event_name",
            "screen_event_name",
        ):
            assert getattr(config, name) == getattr(settings, name), name

    def test_frozen(self) -> None:
        with pytest.raises(AttributeError):
            MappingConfig().project_type = ProjectType.HYBRID  # type: ignore[misc]


class TestLoadMappingConfig:
    def test_mapping_table_and_rules(self, tmp_path: Path) -> None:
        (tmp_path / "rules.toml").write_text('[[transformations]]\naction = "drop"\nevent = "A"\n')
        path = tmp_path / "c.toml"
        path.write_text(
            '[mapping]\nproject_type = "userId"\nmerge_nested_objects = true\ndate_fields = ["d"]\n'
            'transformations_file = "rules.toml"\n[[transformations]]\naction = "drop"\nevent = "B"\n'
        )
        config = load_mapping_config(path)
        assert config.project_type is ProjectType.USER_ID and config.merge_nested_objects
        assert config.date_fields == frozenset({"d"})
        assert [set(rule.events or ()) for rule in config.transformations.rules] == [{"A"}, {"B"}]

    def test_overrides_win(self, tmp_path: Path) -> None:
        path = tmp_path / "c.toml"
        path.write_text('[mapping]\nproject_type = "userId"\n')
        assert load_mapping_config(path, project_type=ProjectType.HYBRID).project_type is ProjectType.HYBRID

    def test_subscription_traits(self, tmp_path: Path) -> None:
        path = tmp_path / "c.toml"
        path.write_text('[mapping]\nemail_lists_trait = "lists"\nopt_out_traits = { email_opt_out = 12 }\n')
        config = load_mapping_config(path)
        assert (config.email_lists_trait, dict(config.opt_out_traits)) == ("lists", {"email_opt_out": 12})

    @pytest.mark.parametrize(
        ("text", "match"),
        [
            ('[mapping]\nopt_out_traits = { email_opt_out = "12" }\n', "opt_out_traits"),
            ("[mapping]\nopt_out_traits = { email_opt_out = 0 }\n", "opt_out_traits"),
            ("[mapping]\nemail_lists_trait = 3\n", "email_lists_trait"),
            ('[mapping]\nproject_type = "phone"\n', "project_type"),
            ("[mapping]\nmerge_nested_objects = 1\n", "merge_nested_objects"),
            ("[mapping]\ncolour = 1\n", "unknown"),
            ('[mapping]\ndate_fields = "d"\n', "date_fields"),
            ("[mapping]\ncart_max_items = 1001\n", "cart_max_items must be an integer from 1 to 1000"),
            ('[[transformations]]\naction = "x"\n', "rule #1"),
            ("[mapping\n", "not valid TOML"),
        ],
    )
    def test_invalid(self, tmp_path: Path, text: str, match: str) -> None:
        path = tmp_path / "c.toml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=match):
            load_mapping_config(path)
