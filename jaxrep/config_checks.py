"""Config validation helpers: every check names the offending field in a one-line message."""

from __future__ import annotations

from typing import Any, Iterable


class ConfigError(ValueError):
    """An invalid config value; the message starts with the dotted field name."""


def require(condition: bool, field: str, message: str) -> None:
    """Raises `ConfigError("field: message")` unless `condition`."""
    if not condition:
        raise ConfigError(f"{field}: {message}")


def require_positive(config: Any, *fields: str) -> None:
    """Checks that each dotted field of `config` is a number > 0."""
    for field in fields:
        value = lookup(config, field)
        require(isinstance(value, (int, float)) and value > 0, field, f"must be > 0, got {value!r}")


def require_choice(config: Any, field: str, choices: Iterable[Any]) -> None:
    choices = tuple(choices)
    value = lookup(config, field)
    require(value in choices, field, f"must be one of {choices}, got {value!r}")


def lookup(config: Any, field: str) -> Any:
    value = config
    for part in field.split("."):
        value = value[part]
    return value


def unknown_preset(preset: str, presets: Iterable[str]) -> ConfigError:
    return ConfigError(f"preset: unknown preset {preset!r}; choose one of {sorted(presets)}")
