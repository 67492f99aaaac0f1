"""Secrets by name from a directory or the environment, and their redaction from everything reported."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest

from automation_executor.domain.redact import REDACTED, Redactor
from automation_executor.runner import secrets_config
from automation_executor.secrets import SecretResolver, SecretsConfig, UnknownSecret
from automation_executor.settings import ExecutorSettings


def test_directory_then_environment_in_the_configured_order(tmp_path: Path) -> None:
    (tmp_path / "DB_PASSWORD").write_text("from-file\n")
    (tmp_path / "CRLF").write_bytes(b"windows\r\n")
    (tmp_path / "KEY").write_text("line1\nline2\n")
    environ = {"AUTOMATION_SECRET_DB_PASSWORD": "from-env", "AUTOMATION_SECRET_ONLY_ENV": "env-only"}
    both = SecretResolver(SecretsConfig(directory=str(tmp_path)), environ)
    assert both.resolve("DB_PASSWORD") == "from-file"  # one trailing newline removed
    assert both.resolve("CRLF") == "windows"
    assert both.resolve("KEY") == "line1\nline2"
    assert both.resolve("ONLY_ENV") == "env-only"
    env_first = SecretResolver(SecretsConfig(directory=str(tmp_path), sources=("env", "dir")), environ)
    assert env_first.resolve("DB_PASSWORD") == "from-env"
    dir_only = SecretResolver(SecretsConfig(directory=str(tmp_path), sources=("dir",)), environ)
    with pytest.raises(UnknownSecret, match="'ONLY_ENV': not found \\(looked in the secrets directory\\)"):
        dir_only.resolve("ONLY_ENV")


def test_unknown_and_invalid_names_are_clear_errors(tmp_path: Path) -> None:
    resolver = SecretResolver(SecretsConfig(directory=str(tmp_path)), {})
    with pytest.raises(UnknownSecret) as missing:
        resolver.resolve("NOPE")
    assert missing.value.name == "NOPE"
    assert "secret 'NOPE': not found" in str(missing.value)
    assert "AUTOMATION_SECRET_<NAME>" in str(missing.value)
    for name in ("../etc/passwd", "lower", "A/B", ""):
        with pytest.raises(UnknownSecret, match="not a secret name"):
            resolver.resolve(name)
    (tmp_path / "BINARY").write_bytes(b"\xff\xfe")
    with pytest.raises(UnknownSecret, match="not UTF-8"):
        resolver.resolve("BINARY")
    nothing = SecretResolver(SecretsConfig(directory=None, sources=("dir",)), {})
    with pytest.raises(UnknownSecret, match="no source"):
        nothing.resolve("X")


def test_sources_parse() -> None:
    assert SecretsConfig.parse_sources("env, dir") == ("env", "dir")
    assert SecretsConfig.parse_sources("dir") == ("dir",)
    for bad in ("vault", "dir,dir", ""):
        with pytest.raises(ValueError, match="source"):
            SecretsConfig.parse_sources(bad)


def test_redaction_of_substrings_longest_first_and_lines_of_multiline_values() -> None:
    redactor = Redactor(["hunter2"])
    assert redactor.text("password=hunter2; again:hunter2hunter2") == f"password={REDACTED}; again:{REDACTED}{REDACTED}"
    redactor.add("hunter2-extended")
    assert redactor.text("x hunter2-extended y") == f"x {REDACTED} y"
    key = "-----BEGIN KEY-----\nAAAAB3NzaC1yc2EAAAADAQABAAABAQ\nzzz\n-----END KEY-----\n"
    redactor.add(key)
    assert redactor.text("printed: AAAAB3NzaC1yc2EAAAADAQABAAABAQ") == f"printed: {REDACTED}"
    assert redactor.text(key) == REDACTED
    assert redactor.text("zzz stays") == "zzz stays"  # too short to be redacted on its own
    assert redactor.longest == len(quote(key, safe="")), "the longest form: percent-encoded, each line break 3 chars"
    assert redactor.text(quote(key, safe="")) == REDACTED
    assert redactor.text(json.dumps({"k": key})) == '{"k": "***"}'
    redactor.add("")
    assert redactor.text("nothing") == "nothing"


def test_redaction_of_json_values() -> None:
    redactor = Redactor(["t0ken"])
    value = {"a": ["x t0ken", {"t0ken": "t0ken"}], "n": 3, "ok": True, "none": None}
    assert redactor.value(value) == {"a": [f"x {REDACTED}", {REDACTED: REDACTED}], "n": 3, "ok": True, "none": None}
    assert Redactor().value(value) is value


def test_the_settings_choose_the_sources() -> None:
    settings = ExecutorSettings(
        env="development", executor_secrets_dir="/run/secrets", executor_secret_sources="env,dir"
    )
    assert secrets_config(settings) == SecretsConfig(directory="/run/secrets", sources=("env", "dir"))
    assert secrets_config(ExecutorSettings(env="development")) == SecretsConfig(directory=None, sources=("dir", "env"))
