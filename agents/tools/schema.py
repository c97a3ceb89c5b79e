"""A tiny JSON-schema validator for tool inputs (the subset our tool schemas use).

Why not ``jsonschema``: it is not a dependency, it costs ~100 ms to import, and the loop's
overhead bar is under a millisecond per tool call. The schemas the model is shown use only
``type``, ``properties``, ``required``, ``additionalProperties``, ``enum``, ``items``,
``minimum``/``maximum``, ``minLength`` and ``minItems``; this validator checks exactly those,
so the model is shown the very schema its input is checked against. An unsupported keyword
in a schema is a programming error and raises at import time (``check_schema``).
"""

from __future__ import annotations

from typing import Any

SUPPORTED = frozenset({
    "type", "properties", "required", "additionalProperties", "enum", "items", "minimum",
    "maximum", "minLength", "minItems", "maxItems", "description", "default", "$schema",
})

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,),
    "integer": (int,), "number": (int, float), "null": (type(None),),
}


def check_schema(schema: dict[str, Any], where: str = "$") -> None:
    """Raise ValueError when a schema uses a keyword this validator would silently ignore."""
    unknown = set(schema) - SUPPORTED
    if unknown:
        raise ValueError(f"schema at {where}: unsupported keywords {sorted(unknown)}")
    for name, sub in schema.get("properties", {}).items():
        check_schema(sub, f"{where}.{name}")
    if isinstance(schema.get("items"), dict):
        check_schema(schema["items"], f"{where}[]")


def _type_ok(value: Any, expected: str | list[str]) -> bool:
    names = [expected] if isinstance(expected, str) else expected
    for name in names:
        if isinstance(value, bool) and name in ("integer", "number"):
            continue  # JSON booleans are not numbers
        if isinstance(value, _TYPES[name]):
            return True
    return False


def validate(value: Any, schema: dict[str, Any], where: str = "input") -> list[str]:
    """Every violation as ``where: message`` (empty list when the value is valid)."""
    errors: list[str] = []
    expected = schema.get("type")
    if expected is not None and not _type_ok(value, expected):
        return [f"{where}: expected {expected}, got {_json_type(value)}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, dict):
        props: dict[str, Any] = schema.get("properties", {})
        for key in schema.get("required", ()):
            if key not in value:
                errors.append(f"{where}: missing required property {key!r}")
        for key, item in value.items():
            if key in props:
                errors += validate(item, props[key], f"{where}.{key}")
            elif schema.get("additionalProperties", True) is False:
                errors.append(f"{where}: unexpected property {key!r}")
    elif isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{where}: needs at least {schema['minItems']} item(s)")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{where}: at most {schema['maxItems']} item(s)")
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                errors += validate(item, items, f"{where}[{i}]")
    elif isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{where}: must not be empty" if schema["minLength"] == 1
                          else f"{where}: shorter than {schema['minLength']}")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: {value} is above the maximum {schema['maximum']}")
    return errors


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _type_ok(value, name):
            return name
    return type(value).__name__
