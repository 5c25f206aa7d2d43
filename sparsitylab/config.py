"""The settings of one experiment (``sparsitylab run``): the known keys and their types, the
defaults, parsing ``key=value`` flags, reading and checking a TOML file, layering them (later
wins) and writing the resolved settings back as TOML."""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TYPES: dict[str, type | tuple[type, ...]] = {
    "method": str,
    "model": str,
    "data": str,
    "sparsity": (int, float),
    "epochs": int,
    "finetune_epochs": int,
    "seed": int,
    "batch_size": int,
    "lr": (int, float),
    "recalibrate_bn": bool,
    "options": dict,
    "model_options": dict,
}
DEFAULTS: dict[str, Any] = {
    "epochs": 1,
    "finetune_epochs": 0,
    "seed": 0,
    "batch_size": 128,
    "lr": 0.05,
    "recalibrate_bn": False,
    "options": {},
    "model_options": {},
}
REQUIRED = ("method", "model", "data")


def parse_value(text: str, lists: bool = False) -> Any:
    """``"3"`` → 3, ``"0.5"`` → 0.5, ``"true"`` → True, anything else the string itself;
    ``lists``: ``"64,32"`` → [64, 32]."""
    if lists and "," in text:
        return [parse_value(part.strip()) for part in text.split(",")]
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_assignments(items: list[str] | None, lists: bool = False) -> dict[str, Any]:
    """``["key=value", ...]`` as a dict of parsed values (:func:`parse_value`)."""
    parsed = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"option {item!r} must look like key=value")
        parsed[key.strip()] = parse_value(value.strip(), lists)
    return parsed


def check_config(config: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """``config`` with every key known and every value of the right type."""
    for key, value in config.items():
        if key not in TYPES:
            raise ValueError(f"{source}: unknown key {key!r}; known: {', '.join(TYPES)}")
        kind = TYPES[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise ValueError(f"{source}: {key} = {value!r} has the wrong type")
    return dict(config)


def load_config(path: str | Path) -> dict[str, Any]:
    """A config TOML file, checked (:func:`check_config`)."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path} is not valid TOML: {error}") from None
    return check_config(raw, str(path))


def resolve(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults, then each layer in turn (later wins; ``options`` tables merge key by key)."""
    config: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in DEFAULTS.items()}
    for layer in layers:
        for key, value in layer.items():
            if value is None:
                continue
            config[key] = {**config[key], **value} if isinstance(value, dict) else value
    missing = [key for key in REQUIRED if key not in config]
    if missing:
        raise ValueError(f"the config names no {', '.join(missing)} (give --{missing[0]})")
    return check_config(config)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
        )
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as TOML")


def to_toml(config: Mapping[str, Any]) -> str:
    """``config`` (keys of :data:`TYPES`) as TOML: plain keys first, then one table per dict
    (``tomllib`` reads it back)."""
    config = dict(sorted(config.items(), key=lambda item: list(TYPES).index(item[0])))
    lines = [f"{k} = {_toml_value(v)}" for k, v in config.items() if not isinstance(v, dict)]
    for key, table in config.items():
        if isinstance(table, dict):
            lines += ["", f"[{key}]"] + [
                f"{json.dumps(k)} = {_toml_value(v)}" for k, v in table.items()
            ]
    return "\n".join(lines) + "\n"
