"""The study configuration: defaults from the schema, and errors a person can act on.

The JSON schema (``workflow/schemas/config.schema.yaml``) is the one place where defaults live.
:func:`validate_config` fills them in (in place, like ``snakemake.utils.validate``) and, when the
config is wrong, raises :class:`ConfigError` listing each problem as ``key.path: message`` with a close
match for a mistyped key, instead of the whole schema. Tests build their configs with
:func:`load_config` so they see exactly what the pipeline sees.

The values ``explain.methods.<name>.method`` accepts are not listed in the schema file: they are the
explainer registry's (:mod:`neuronaudit.explainers.registry`), filled in by :func:`schema_with_registry`.
"""

from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from neuronaudit.explainers import methods as _builtin_explainers  # noqa: F401 (registers the built-ins)
from neuronaudit.explainers.registry import explainer_names

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The config does not match the schema; the message lists every offending key."""


def _with_defaults(validator_class):
    check_properties = validator_class.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if isinstance(sub, dict) and "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, props, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": properties})


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    v = error.validator
    if v == "additionalProperties":
        allowed = sorted((error.schema.get("properties") or {}).keys())
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        parts = []
        for key in extra:
            close = difflib.get_close_matches(str(key), allowed, n=2)
            hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
            parts.append(f"unknown key {key!r}{hint}")
        return f"{where}: {'; '.join(parts)}; allowed keys: {', '.join(allowed)}"
    if v == "required":
        return f"{where}: {error.message}"
    if v == "enum":
        return f"{where}: {_short(error.instance)} is not one of {error.validator_value}"
    if v == "type":
        return f"{where}: {_short(error.instance)} should be of type {error.validator_value}"
    if v in ("oneOf", "anyOf"):
        return f"{where}: {_short(error.instance)} matches none of the allowed forms ({v})"
    return f"{where}: {error.message if len(error.message) < 300 else _short(error.instance) + ' is invalid (' + v + ')'}"


def _coerce(value: Any) -> Any:
    """Strings that YAML reads as numbers, booleans or null, converted (recursively)."""
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return parsed if parsed is None or isinstance(parsed, int | float | bool) else value
    if isinstance(value, list):
        return [_coerce(v) for v in value]
    if isinstance(value, dict):
        return {k: _coerce(v) for k, v in value.items()}
    return value


def _set(config: dict, path, value: Any) -> None:
    target = config
    for p in list(path)[:-1]:
        target = target[p]
    target[list(path)[-1]] = value


def _fix_command_line_types(error: jsonschema.ValidationError, config: dict) -> bool:
    """Snakemake reads the inside of ``--config key={a: 3}`` as strings ('3'); convert such a value
    where the schema rejects the string but accepts what YAML makes of it. Returns whether it changed."""
    if not error.absolute_path or error.validator not in ("type", "oneOf", "anyOf", "enum"):
        return False
    value = error.instance
    if error.validator == "type" and isinstance(value, int | float) and not isinstance(value, bool):
        allowed = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        if "string" in allowed:  # --config study=2026 arrives as an int
            _set(config, error.absolute_path, str(value))
            return True
    coerced = _coerce(value)
    if coerced == value and type(coerced) is type(value):
        return False
    _set(config, error.absolute_path, coerced)
    return True


def schema_with_registry(schema_doc: dict) -> dict:
    """The schema with the enum of ``explain.methods.<name>.method`` set to the registered explainers."""
    try:
        method = schema_doc["properties"]["explain"]["properties"]["methods"]["additionalProperties"]["properties"]
    except (KeyError, TypeError):
        return schema_doc
    if "method" in method:
        method["method"]["enum"] = explainer_names()
    return schema_doc


def validate_config(config: dict, schema: str | os.PathLike = SCHEMA, source: str = "config") -> dict:
    """Fill schema defaults into ``config`` (in place) and check it; return it.

    Raises :class:`ConfigError` naming every bad key (``dataset.splits.train: -1 is less than the
    minimum of 0``) and, for a mistyped key, the closest allowed one. Values given on the command line
    as ``--config 'sampling={seeds: 3}'`` (which Snakemake passes as strings) are converted first.
    """
    with open(schema) as fh:
        schema_doc = schema_with_registry(yaml.safe_load(fh))
    validator = _with_defaults(jsonschema.validators.validator_for(schema_doc))(schema_doc)
    for _ in range(10):
        errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
        changed = [_fix_command_line_types(e, config) for e in errors]
        if not any(changed):
            break
    if errors:
        lines = "\n".join(f"  - {_describe(e)}" for e in errors)
        raise ConfigError(
            f"invalid {source} ({len(errors)} problem{'s' if len(errors) > 1 else ''}):\n{lines}\n"
            "Every key is documented in config/README.md."
        )
    return config


def load_config(*paths: str | os.PathLike, overrides: dict | None = None) -> dict:
    """Read config files (later ones update earlier ones recursively), apply ``overrides`` the way
    ``--config`` does, and fill the schema's defaults: the config the pipeline's jobs see."""
    config: dict = {}
    for p in paths:
        with open(p) as fh:
            update(config, yaml.safe_load(fh) or {})
    update(config, overrides or {})
    return validate_config(config, source=", ".join(map(str, paths)) or "config")


def update(base: dict, new: dict) -> dict:
    """Recursive dict update, as Snakemake merges --configfile and --config into the config."""
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            update(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base
