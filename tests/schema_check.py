"""A small JSON Schema checker for the keywords dsa_bench/schemas/*.json use (type, const, enum,
required, properties, additionalProperties, items, minimum, anyOf, $ref to #/$defs): enough to check
`dsa-bench run --json` without adding jsonschema as a dependency. Returns every problem with its path."""
from __future__ import annotations

from typing import Any

TYPES = {
    "object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "null": lambda v: v is None,
}
KNOWN = {"$schema", "$id", "$defs", "title", "description", "type", "const", "enum", "required", "properties",
         "additionalProperties", "items", "minimum", "anyOf", "$ref"}


def problems(value: Any, schema: dict, root: dict | None = None, path: str = "$") -> list[str]:
    root = root or schema
    unknown = set(schema) - KNOWN
    if unknown:
        raise ValueError(f"{path}: schema keywords this checker does not implement: {sorted(unknown)}")
    if "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/$defs/"), ref
        return problems(value, root["$defs"][ref.split("/")[-1]], root, path)
    out: list[str] = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(TYPES[t](value) for t in types):
            return [f"{path}: {type(value).__name__} {value!r:.60} is not {' or '.join(types)}"]
    if "const" in schema and value != schema["const"]:
        out.append(f"{path}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if "minimum" in schema and TYPES["number"](value) and value < schema["minimum"]:
        out.append(f"{path}: {value} < {schema['minimum']}")
    if "anyOf" in schema:
        tries = [problems(value, s, root, path) for s in schema["anyOf"]]
        if all(tries):
            out.append(f"{path}: matches none of anyOf: " + " | ".join(t[0] for t in tries))
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{path}: missing {key!r}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, v in value.items():
            if key in props:
                out += problems(v, props[key], root, f"{path}.{key}")
            elif extra is False:
                out.append(f"{path}: unexpected key {key!r}")
            elif isinstance(extra, dict):
                out += problems(v, extra, root, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            out += problems(v, schema["items"], root, f"{path}[{i}]")
    return out
