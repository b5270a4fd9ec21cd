"""An OpenAPI 3.1 document of the ``/api/v2.0`` operations Dockyard implements.

Built from the same ``Operation`` declarations the router serves: path, method,
operationId, summary (the handler's first docstring line), path and query
parameters, and the request and response schemas of their pydantic models.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import TypeAdapter

from dockyard.http.api import API_PREFIX, Operation

_REF_TEMPLATE = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"\{([^}/]+)\}")
_INTEGER_QUERY = frozenset({"page", "page_size"})

ERRORS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                "required": ["code", "message"],
            },
        }
    },
    "required": ["errors"],
}
"""Harbor's error body, the answer of every failed operation."""

Mode = Literal["validation", "serialization"]


def build_openapi(operations: Iterable[Operation], *, version: str) -> dict[str, Any]:
    """The document: one path item per path, one operation per method."""
    ops = list(operations)
    schemas, definitions = _schemas(ops)
    paths: dict[str, dict[str, Any]] = {}
    for index, op in enumerate(ops):
        entry: dict[str, Any] = {
            "operationId": op.operation_id or _camel(op.handler.__name__),
            "summary": op.summary,
            "parameters": _parameters(op),
            "responses": _responses(op, schemas.get((index, "serialization"))),
        }
        if op.operation_id is None:
            entry["tags"] = ["dockyard"]
        body = schemas.get((index, "validation"))
        if body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Dockyard API",
            "version": version,
            "description": "Harbor's /api/v2.0 operations as Dockyard implements them.",
        },
        "servers": [{"url": API_PREFIX}],
        "security": [{"basic": []}, {}],
        "paths": paths,
        "components": {
            "schemas": {"Errors": ERRORS_SCHEMA, **definitions},
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
        },
    }


def _schemas(
    ops: list[Operation],
) -> tuple[dict[tuple[int, Mode], dict[str, Any]], dict[str, Any]]:
    """Every body and response schema at once, so a shared model is one component.

    Returns the schema of each (operation index, mode) and the components they refer to.
    """
    inputs: list[tuple[tuple[int, Mode], Mode, TypeAdapter[Any]]] = []
    for index, op in enumerate(ops):
        if op.body is not None:
            inputs.append(((index, "validation"), "validation", TypeAdapter(op.body)))
        if op.response is not None:
            inputs.append(((index, "serialization"), "serialization", TypeAdapter(op.response)))
    found, definitions = TypeAdapter.json_schemas(inputs, ref_template=_REF_TEMPLATE)
    schemas = {key: schema for (key, _mode), schema in found.items()}
    return schemas, dict(definitions.get("$defs", {}))


def _parameters(op: Operation) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(op.path)
    ]
    for name in op.query:
        kind = "integer" if name in _INTEGER_QUERY else "string"
        params.append({"name": name, "in": "query", "required": False, "schema": {"type": kind}})
    return params


def _responses(op: Operation, schema: dict[str, Any] | None) -> dict[str, Any]:
    success: dict[str, Any] = {"description": "Success"}
    if schema is not None:
        success["content"] = {"application/json": {"schema": schema}}
    if "page" in op.query:
        success["headers"] = {
            "X-Total-Count": {"schema": {"type": "integer"}, "description": "Items in all pages"},
            "Link": {"schema": {"type": "string"}, "description": "The previous and next pages"},
        }
    return {
        str(op.status): success,
        "default": {
            "description": "Harbor's error body",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}},
        },
    }


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)
