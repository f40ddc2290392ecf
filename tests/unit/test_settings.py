"""``streams.settings``: invalid values are one ``ConfigError`` line naming the ``FPI_`` variable, and
``problems()`` finds what a valid type cannot tell."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from streams.errors import ConfigError
from streams.identity import HoldRule
from streams.settings import Settings, load_settings, redact_url


class TestLoad:
    def test_names_the_variable_and_hides_secrets(self) -> None:
        with pytest.raises(ConfigError) as caught:
            Settings.load(iterable_api_key=["not", "a", "string"], topic_partitions="x")
        message = str(caught.value)
        assert "invalid FPI_ITERABLE_API_KEY: " in message and "['not'" not in message
        assert "invalid FPI_TOPIC_PARTITIONS='x'" in message

    def test_json_setting(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FPI_DATE_FIELDS", "trial_ends")
        with pytest.raises(ConfigError, match=r"^invalid FPI_DATE_FIELDS: not valid JSON"):
            Settings.load()

    def test_opt_out_traits_is_a_json_object_of_channel_ids(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FPI_OPT_OUT_TRAITS", '{"email_opt_out": 12}')
        settings = Settings.load()
        assert settings.opt_out_traits == {"email_opt_out": 12} and settings.subscriptions_kept()
        monkeypatch.setenv("FPI_OPT_OUT_TRAITS", "email_opt_out=12")
        with pytest.raises(ConfigError, match=r'JSON object such as \{"email_opt_out": 12\}'):
            Settings.load()
        monkeypatch.setenv("FPI_OPT_OUT_TRAITS", '{"email_opt_out": 0}')
        with pytest.raises(ConfigError, match="FPI_OPT_OUT_TRAITS"):
            Settings.load()


class TestProblems:
    @pytest.mark.parametrize(("values", "expected"), [
        ({}, []),
        ({"store": "rocksdb"}, ["FPI_STORE='rocksdb' is not supported"]),
        ({"iterable_base_url": "api.iterable.com"}, ["FPI_ITERABLE_BASE_URL='api.iterable.com' is not a valid"]),
        ({"schema_registry_url": "http://a:b@:8081"}, ["FPI_SCHEMA_REGISTRY_URL='http://***@:8081' is not"]),
        ({"kafka_bootstrap": "a:1,b"}, ["FPI_KAFKA_BOOTSTRAP='a:1,b' is not a host:port list"]),
        ({"kafka_bootstrap": "[::1]:9092,b:9093"}, []),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "u", "kafka_sasl_password": "p"}, []),
        ({"kafka_security_protocol": "SASL_SSL"},
         ["FPI_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs FPI_KAFKA_SASL_USERNAME and FPI_KAFKA_SASL_PASSWORD"]),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": __file__},
         ["FPI_KAFKA_SSL_KEYFILE is set without FPI_KAFKA_SSL_CERTFILE"]),
        ({"kafka_ssl_cafile": "/nonexistent"}, []),  # not used with PLAINTEXT
        ({"schema_registry_username": "u"}, ["FPI_SCHEMA_REGISTRY_USERNAME and FPI_SCHEMA_REGISTRY_PASSWORD go"]),
        ({"schema_registry_user_info": "no-colon"}, ["FPI_SCHEMA_REGISTRY_USER_INFO is not user:password"]),
        ({"schema_registry_token": "t", "schema_registry_user_info": "u:p"},
         ["FPI_SCHEMA_REGISTRY_USER_INFO and FPI_SCHEMA_REGISTRY_TOKEN are both set"]),
        ({"schema_registry_cafile": "/nonexistent"}, ["FPI_SCHEMA_REGISTRY_CAFILE=/nonexistent: no such file"]),
        ({"schema_registry_username": "u", "schema_registry_password": "p", "schema_registry_cafile": __file__}, []),
    ])
    def test_table(self, values: dict[str, str], expected: list[str]) -> None:
        found = Settings(**values).problems()  # type: ignore[arg-type]
        assert len(found) == len(expected)
        for problem, start in zip(found, expected, strict=True):
            assert problem.startswith(start)

    def test_load_settings_refuses_them(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"FPI_KAFKA_SSL_CAFILE=.*: no such file"):
            load_settings(kafka_security_protocol="SSL", kafka_ssl_cafile=tmp_path / "ca.pem")


class TestSecrets:
    def test_empty_variables_are_unset(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # a ConfigMap key left blank: not the current directory, not an empty password
        for name in ("FPI_KAFKA_SSL_CAFILE", "FPI_SCHEMA_REGISTRY_CAFILE", "FPI_SCHEMA_REGISTRY_TOKEN"):
            monkeypatch.setenv(name, "")
        settings = Settings.load(kafka_security_protocol="SSL")
        assert (settings.kafka_ssl_cafile, settings.schema_registry_cafile, settings.schema_registry_token) == (
            None, None, None)
        assert settings.problems() == []

    def test_registry_secrets_are_masked_and_redacted(self) -> None:
        settings = Settings(schema_registry_password="pw-1", schema_registry_username="u",  # type: ignore[arg-type]
                            schema_registry_token="tok-2", iterable_api_key="key-3")
        shown = settings.as_dict()
        assert shown["schema_registry_password"] == shown["schema_registry_token"] == "**********"
        assert "pw-1" not in repr(settings) and "tok-2" not in str(shown)
        assert sorted(settings.secret_values()) == ["key-3", "pw-1", "tok-2"]
        with pytest.raises(ConfigError) as caught:
            Settings.load(schema_registry_token=["not-a-string"])
        assert "not-a-string" not in str(caught.value)


class TestRedactUrl:
    @pytest.mark.parametrize(("text", "shown"), [
        ("https://user:pw@host/x", "https://***@host/x"),
        ("http://host:8081", "http://host:8081"),
        ("at http://token@a and https://b:c@d", "at http://***@a and https://***@d"),
    ])
    def test_masks_credentials(self, text: str, shown: str) -> None:
        assert redact_url(text) == shown


class TestHoldAnonymous:
    def test_off_by_default_and_when_empty(self, monkeypatch: pytest.MonkeyPatch) -> None:
        assert Settings().hold_rule() is None
        monkeypatch.setenv("FPI_HOLD_ANONYMOUS_SECONDS", "")
        assert Settings().hold_rule() is None

    def test_the_rule_from_the_three_settings(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FPI_HOLD_ANONYMOUS_SECONDS", "1800")
        monkeypatch.setenv("FPI_HOLD_ANONYMOUS_PER_DEVICE", "7")
        monkeypatch.setenv("FPI_HOLD_ANONYMOUS_TOTAL", "70")
        assert Settings().hold_rule() == HoldRule(timedelta(minutes=30), 7, 70)

    def test_a_window_must_be_positive(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FPI_HOLD_ANONYMOUS_SECONDS", "0")
        with pytest.raises(ConfigError, match="FPI_HOLD_ANONYMOUS_SECONDS"):
            Settings.load()
