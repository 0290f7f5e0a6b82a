"""Settings reach a worker through its environment."""

import pytest

from shared.settings import Settings


def test_settings_survive_the_trip_through_the_environment():
    settings = Settings(smtp_host="10.0.0.1", smtp_port=2525, smtp_timeout=2.5,
                        store_path="/tmp/x.sqlite3", redis_url="redis://h:1/0", avatar_size=64)
    assert Settings.from_env(settings.to_env()) == settings


def test_missing_variables_take_the_defaults():
    assert Settings.from_env({}) == Settings()


def test_a_bad_number_names_the_variable():
    with pytest.raises(ValueError, match="DEFER_SMTP_PORT='eight'"):
        Settings.from_env({"DEFER_SMTP_PORT": "eight"})
