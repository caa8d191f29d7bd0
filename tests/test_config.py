from pathlib import Path

import pytest

from dispatch.config import ConfigError, load_settings


def test_env_overrides_file(tmp_path: Path):
    cfg = tmp_path / "d.toml"
    cfg.write_text('web_port = 8100\nfrom_address = "a@example.org"\n[smtp]\nusername = "u"\n')
    s = load_settings(cfg, env={"DISPATCH_WEB_PORT": "9000"})
    assert s.web_port == 9000
    assert s.from_address == "a@example.org"
    assert s.smtp_username == "u"


def test_unknown_key_named(tmp_path: Path):
    cfg = tmp_path / "d.toml"
    cfg.write_text("no_such_setting = 1\n")
    with pytest.raises(ConfigError, match="no_such_setting"):
        load_settings(cfg, env={})


def test_bad_type_names_env_var():
    with pytest.raises(ConfigError, match="DISPATCH_WEB_PORT"):
        load_settings(env={"DISPATCH_WEB_PORT": "eighty"})


def test_secrets_redacted():
    s = load_settings(env={"DISPATCH_SMTP_PASSWORD": "hunter2", "DISPATCH_SECRET_KEY": "k"})
    shown = s.redacted()
    assert shown["smtp_password"] == "***" and shown["secret_key"] == "***"
    assert "hunter2" not in repr(shown)


def test_generated_signing_key_is_stable_and_private(tmp_path: Path):
    s = load_settings(env={"DISPATCH_DATA_DIR": str(tmp_path)})
    k1, k2 = s.signing_key(), s.signing_key()
    assert k1 == k2 and len(k1) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_example_config_loads():
    from dispatch.paths import PROJECT_ROOT

    s = load_settings(PROJECT_ROOT / "config" / "dispatch.example.toml", env={})
    assert s.public_base_url.startswith("https://")
    assert s.smtp_timeout == 30.0 and s.retry_base_seconds == 60.0
