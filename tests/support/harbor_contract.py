"""Harbor's ``swagger.yaml`` as an executable contract for Dockyard's ``/api/v2.0``.

``HarborContract(spec)`` reads the Swagger 2.0 document once: it resolves the
``$ref``s of parameters and responses, turns every definition into JSON Schema
(draft 7) and indexes the operations by method and path template. Then:

- ``match(method, path)`` finds the swagger operation a request is for, preferring
  literal segments over parameters (``/users/current`` before ``/users/{user_id}``)
  and ignoring a trailing slash (``/projects/{p}/metadatas/``);
- ``check_exchange(...)`` lists what is wrong with one request/response pair;
- ``check_declaration(...)`` lists what is wrong with how Dockyard declares an
  ``Operation`` (operationId, method, path template, query names).

Response bodies are checked STRICTLY: an object with ``properties`` and no
explicit ``additionalProperties`` admits no other field (Dockyard must not invent
fields), a field without ``x-nullable`` may not be null, and a field Harbor marks
``x-omitempty: false`` (always sent, even when zero) must be present.

``load_contract()`` finds the file at ``<repo>/../shared/harbor-api/swagger.yaml``
or ``$DOCKYARD_HARBOR_SWAGGER`` and parses it once per process; it returns
``None`` when there is no file, and callers then skip their checks.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml
from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError

SWAGGER_ENV = "DOCKYARD_HARBOR_SWAGGER"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SWAGGER = REPO_ROOT.parent / "shared" / "harbor-api" / "swagger.yaml"
BASE_PATH = "/api/v2.0"
CONTRACT_HEADER = "X-Dockyard-Contract"
"""A request carrying ``X-Dockyard-Contract: skip`` is not checked (see the conftest hook)."""

DOCKYARD_ONLY: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/openapi.json"),
        # Trusted keys and signature status (issue 22, docs/signatures.md).
        ("GET", "/projects/{project_name_or_id}/trusted-keys"),
        ("POST", "/projects/{project_name_or_id}/trusted-keys"),
        ("GET", "/projects/{project_name_or_id}/trusted-keys/{key_id}"),
        ("DELETE", "/projects/{project_name_or_id}/trusted-keys/{key_id}"),
        (
            "GET",
            "/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}"
            "/signatures",
        ),
    }
)
"""Dockyard endpoints Harbor does not have: (method, path template under ``/api/v2.0``)."""


def dockyard_only(method: str, relative: str) -> bool:
    """Whether ``method relative`` is one of Dockyard's own operations."""
    segments = _split(relative)
    return any(m == method and _fits(_split(template), segments) for m, template in DOCKYARD_ONLY)


OUTSIDE_CONTRACT_STATUSES: frozenset[int] = frozenset({401, 403, 413, 429})
"""Statuses the HTTP layer may give any operation although swagger declares them
for only some: 401 and 403 come from Harbor's authentication, CSRF and
authorisation middleware on every operation; 413 (body over the size limit) and
429 (logins throttled) from the edge. Their body must still be Harbor's error body.
Everything else an operation answers must be declared for it."""

HARBOR_UNDECLARED: Mapping[str, frozenset[int]] = {
    # Harbor answers these although its swagger does not declare them (issue 14 pins them):
    "deleteTag": frozenset({412}),  # an immutable tag "configured as immutable, cannot be deleted"
    "deleteArtifact": frozenset({412}),  # the same for an artifact holding an immutable tag
    "CreateImmuRule": frozenset({409}),  # a rule identical to an existing one
    "UpdateImmuRule": frozenset({409}),  # an update making it identical to another
    "CopyArtifact": frozenset({412}),  # a copy onto a tag an immutability rule protects
    "triggerRetentionExecution": frozenset({400}),  # an unknown retention policy
}
"""Statuses Harbor itself gives an operation although its swagger omits them, each with
the reason; bodies must still be Harbor's error body. A 400 for a bad ``q``/``sort``/
``page`` is allowed on every listing below (Harbor's query middleware answers it)."""

UNCHECKED_BODIES: frozenset[str] = frozenset({"getInternalconfig", "getVulnerabilitiesAddition"})
"""Operations whose success body Harbor's own swagger mistypes: ``InternalConfigurationValue``
declares ``value`` an object, while Harbor answers strings, numbers and booleans there; the
vulnerabilities addition is declared a string, while Harbor answers a JSON object (report
MIME type -> report)."""

CHECKED: Counter[str] = Counter()
"""operationIds of the exchanges checked in this process (for the coverage note)."""

_MAX_PROBLEMS = 8
_SCHEMA_KEYWORDS = (
    "type",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "multipleOf",
    "required",
    "minProperties",
    "maxProperties",
)

ERROR_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["errors"],
    "additionalProperties": False,
    "properties": {
        "errors": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["code", "message"],
                "additionalProperties": False,
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            },
        }
    },
}
"""Harbor's error body ``{"errors":[{"code","message"}]}``, strictly."""
_ERROR_BODY = Draft7Validator(ERROR_BODY_SCHEMA)


@dataclass(frozen=True)
class SwaggerOperation:
    """One swagger operation with its ``$ref``s resolved."""

    method: str
    path: str
    operation_id: str
    parameters: tuple[Mapping[str, Any], ...]
    responses: Mapping[str, Mapping[str, Any]]
    produces: tuple[str, ...]

    @property
    def segments(self) -> tuple[str, ...]:
        return _split(self.path)

    def parameter_names(self, where: str) -> frozenset[str]:
        """Names of the parameters ``in`` ``where`` (``query``, ``path``, ``header``…)."""
        return frozenset(str(p["name"]) for p in self.parameters if p.get("in") == where)

    def parameter(self, where: str, name: str) -> Mapping[str, Any] | None:
        for param in self.parameters:
            if param.get("in") == where and param.get("name") == name:
                return param
        return None


class HarborContract:
    """Harbor's swagger, parsed: operations by method and path, definitions as JSON Schema."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec
        self.base_path = str(spec.get("basePath", BASE_PATH)).rstrip("/")
        self.definitions: dict[str, Any] = {
            name: self.to_json_schema(schema)
            for name, schema in (spec.get("definitions") or {}).items()
        }
        default_produces = tuple(spec.get("produces") or ("application/json",))
        self.operations: list[SwaggerOperation] = []
        for path, item in (spec.get("paths") or {}).items():
            shared = [self._resolve(p) for p in item.get("parameters", [])]
            for method, raw in item.items():
                if method == "parameters" or not isinstance(raw, Mapping):
                    continue
                own = [self._resolve(p) for p in raw.get("parameters", [])]
                overridden = {(p.get("in"), p.get("name")) for p in own}
                params = [p for p in shared if (p.get("in"), p.get("name")) not in overridden]
                self.operations.append(
                    SwaggerOperation(
                        method=method.upper(),
                        path=path,
                        operation_id=str(raw.get("operationId", f"{method} {path}")),
                        parameters=tuple(params + own),
                        responses={
                            str(code): self._resolve(response or {})
                            for code, response in (raw.get("responses") or {}).items()
                        },
                        produces=tuple(raw.get("produces") or default_produces),
                    )
                )
        self.by_id = {op.operation_id: op for op in self.operations}
        self._validators: dict[tuple[str, str], Draft7Validator] = {}

    # --- $ref and schema conversion -------------------------------------------------

    def _pointer(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            raise ValueError(f"only local $refs are supported, not {ref!r}")
        node: Any = self.spec
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def _resolve(self, node: Any) -> Any:
        """Follow ``$ref`` (parameters, responses) until a real object."""
        seen = set()
        while isinstance(node, Mapping) and "$ref" in node:
            ref = node["$ref"]
            if ref in seen:
                raise ValueError(f"$ref cycle at {ref}")
            seen.add(ref)
            node = self._pointer(ref)
        return node

    def _flatten_all_of(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        """``allOf`` of objects as one object (so strictness sees every property)."""
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        properties = dict(merged.get("properties") or {})
        required = list(merged.get("required") or [])
        for part in schema["allOf"]:
            part = self._resolve(part)
            if "allOf" in part:
                part = self._flatten_all_of(part)
            properties.update(part.get("properties") or {})
            required.extend(part.get("required") or [])
            for key in ("type", "additionalProperties"):
                if key in part and key not in merged:
                    merged[key] = part[key]
        merged["properties"] = properties
        merged.setdefault("type", "object")
        if required:
            merged["required"] = sorted(set(required))
        return merged

    def to_json_schema(self, schema: Any) -> dict[str, Any]:
        """A swagger schema as a strict draft-7 JSON Schema (``$ref``s to ``#/definitions/``)."""
        if not isinstance(schema, Mapping):
            return {}
        nullable = bool(schema.get("x-nullable") or schema.get("x-isnullable"))
        if "$ref" in schema:
            ref = str(schema["$ref"])
            if ref.startswith("#/definitions/"):
                target: dict[str, Any] = {"$ref": ref}
            else:
                target = self.to_json_schema(self._resolve(schema))
            return _nullable(target) if nullable else target
        if "allOf" in schema:
            schema = self._flatten_all_of(schema)
        out: dict[str, Any] = {k: schema[k] for k in _SCHEMA_KEYWORDS if k in schema}
        if out.get("type") == "file":
            del out["type"]
        for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if schema.get(bound) is True and limit in out:  # swagger's boolean form
                out[bound] = out.pop(limit)
        if "items" in schema:
            out["items"] = self.to_json_schema(schema["items"])
        properties = schema.get("properties")
        if isinstance(properties, Mapping):
            out.setdefault("type", "object")
            out["properties"] = {name: self.to_json_schema(sub) for name, sub in properties.items()}
            always = {
                name
                for name, sub in properties.items()
                if isinstance(sub, Mapping) and sub.get("x-omitempty") is False
            }
            if always:
                out["required"] = sorted(set(out.get("required", [])) | always)
        extra = schema.get("additionalProperties")
        if isinstance(extra, bool):
            out["additionalProperties"] = extra
        elif isinstance(extra, Mapping) and dict(extra) == {"type": "object"}:
            # go-swagger (Harbor's generator) reads a bare ``type: object`` map value as
            # interface{}: ExtraAttrs holds strings and numbers as well as objects.
            out["additionalProperties"] = {}
        elif isinstance(extra, Mapping):
            out["additionalProperties"] = self.to_json_schema(extra)
        elif isinstance(properties, Mapping):
            out["additionalProperties"] = False  # strict: no field Harbor does not have
        return _nullable(out) if nullable else out

    def validator(self, op: SwaggerOperation, status: str) -> Draft7Validator | None:
        """The compiled validator of ``op``'s ``status`` response body (None: no body)."""
        key = (op.operation_id, status)
        if key not in self._validators:
            schema = op.responses[status].get("schema")
            if schema is None:
                return None
            root = {"allOf": [self.to_json_schema(schema)], "definitions": self.definitions}
            self._validators[key] = Draft7Validator(root)
        return self._validators[key]

    # --- matching -------------------------------------------------------------------

    def relative_path(self, path: str) -> str | None:
        """``path`` (raw, percent-encoded) under the base path, or None when outside it."""
        path = path.partition("?")[0]
        if path == self.base_path:
            return "/"
        if not path.startswith(self.base_path + "/"):
            return None
        return path[len(self.base_path) :]

    def match(self, method: str, path: str) -> SwaggerOperation | None:
        """The operation for ``method`` and ``path`` (relative to the base path)."""
        segments = _split(path)
        fitting = [
            op
            for op in self.operations
            if op.method == method.upper() and _fits(op.segments, segments)
        ]
        if not fitting:
            return None
        # Literal segments win over parameters, leftmost difference first.
        return min(fitting, key=lambda op: tuple(_is_param(s) for s in op.segments))

    # --- checks ---------------------------------------------------------------------

    def check_exchange(
        self,
        method: str,
        path: str,
        query_params: Mapping[str, str] | Iterable[tuple[str, str]],
        status: int,
        headers: Mapping[str, str],
        body_bytes: bytes,
    ) -> list[str]:
        """What is wrong with one answer to ``method path?query``; empty when nothing."""
        method = method.upper()
        relative = self.relative_path(path)
        if relative is None:
            return []
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
        pairs = list(query_params.items() if isinstance(query_params, Mapping) else query_params)
        if dockyard_only(method, relative):
            return _error_body_problems(method, body_bytes) if 400 <= status < 500 else []
        op = self.match(method, relative)
        if op is None:
            if status in (404, 405):
                return _error_body_problems(method, body_bytes)
            return [f"{method} {relative} is no operation of Harbor's API, yet answered {status}"]
        CHECKED[op.operation_id] += 1
        problems = [
            f"query parameter {name!r} is not declared by {op.operation_id}"
            for name in sorted({name for name, _ in pairs} - op.parameter_names("query"))
        ]
        status_key = str(status) if str(status) in op.responses else "default"
        undeclared_ok = status in HARBOR_UNDECLARED.get(op.operation_id, frozenset()) or (
            status == 400 and op.parameter("query", "sort") is not None
        )
        if status_key not in op.responses:
            if status not in OUTSIDE_CONTRACT_STATUSES and not undeclared_ok:
                declared = ", ".join(sorted(op.responses))
                problems.append(f"status {status} is not declared (declared: {declared})")
            if 400 <= status < 500:
                problems += _error_body_problems(method, body_bytes)
            return problems
        if 400 <= status < 500:
            return problems + _error_body_problems(method, body_bytes)
        if 200 <= status < 300:
            problems += self._header_problems(op, status_key, lowered, pairs)
            if op.operation_id not in UNCHECKED_BODIES:
                problems += self._body_problems(op, status_key, method, lowered, body_bytes)
        return problems

    def _header_problems(
        self,
        op: SwaggerOperation,
        status: str,
        headers: Mapping[str, str],
        query: list[tuple[str, str]],
    ) -> list[str]:
        declared = {str(name).lower() for name in op.responses[status].get("headers") or {}}
        problems = [
            f"response header {name} is declared but missing"
            for name in sorted(declared - {"link"})
            if name not in headers
        ]
        total = headers.get("x-total-count", "")
        if "link" in declared and total.isdigit():
            page = _int_param(query, "page", 1)
            size_param = op.parameter("query", "page_size") or {}
            size = _int_param(query, "page_size", int(size_param.get("default", 10)))
            if (
                page
                and size
                and int(total) > page * size
                and 'rel="next"' not in headers.get("link", "")
            ):
                problems.append(
                    f"X-Total-Count {total} exceeds page {page} of {size} "
                    'but Link has no rel="next"'
                )
        return problems

    def _body_problems(
        self,
        op: SwaggerOperation,
        status: str,
        method: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> list[str]:
        if method == "HEAD":
            return []
        validator = self.validator(op, status)
        if validator is None:
            if body.strip():
                return [f"a {status} body was sent where swagger declares none: {_clip(body)}"]
            return []
        content_type = headers.get("content-type", "")
        if not _is_json(content_type):
            if any(_is_json(kind) for kind in op.produces):
                return [f"expected a JSON body, got Content-Type {content_type!r}: {_clip(body)}"]
            return []  # text/plain and the like: only JSON bodies have a shape to check
        try:
            data = json.loads(body)
        except ValueError:
            return [f"the body is not valid JSON: {_clip(body)}"]
        return _schema_problems(validator, data)

    def check_declaration(
        self,
        method: str,
        path: str,
        operation_id: str | None,
        query: Iterable[str],
        status: int | None = None,
    ) -> list[str]:
        """What is wrong with how Dockyard declares an operation; empty when nothing.

        Same operationId, method and path template as swagger; query and path
        parameter names swagger declares; a success ``status`` swagger declares.
        """
        if operation_id is None:
            if (method.upper(), path.rstrip("/") or "/") in DOCKYARD_ONLY:
                return []
            return [f"{method} {path} has no operationId and is not in DOCKYARD_ONLY"]
        op = self.by_id.get(operation_id)
        if op is None:
            return [f"{operation_id} is not an operationId of Harbor's swagger"]
        problems = []
        if op.method != method.upper():
            problems.append(f"{operation_id}: method {method} but swagger says {op.method}")
        if op.path != path:
            problems.append(f"{operation_id}: path {path} but swagger says {op.path}")
        undeclared = sorted(set(query) - op.parameter_names("query"))
        if undeclared:
            problems.append(f"{operation_id}: query {undeclared} not declared by swagger")
        ours = {s[1:-1] for s in _split(path) if _is_param(s)}
        if ours != op.parameter_names("path"):
            problems.append(
                f"{operation_id}: path parameters {sorted(ours)} but swagger declares "
                f"{sorted(op.parameter_names('path'))}"
            )
        if status is not None and str(status) not in op.responses:
            problems.append(f"{operation_id}: answers {status}, which swagger does not declare")
        return problems


def report(method: str, path: str, status: int, problems: list[str]) -> str:
    """A readable failure message for the problems of one exchange."""
    contract = load_contract()
    relative = contract.relative_path(path) if contract else None
    op = contract.match(method, relative) if contract and relative is not None else None
    name = op.operation_id if op else "no swagger operation"
    lines = "\n".join(f"  - {p}" for p in problems)
    return f"{method} {path} -> {status} breaks Harbor's contract ({name}):\n{lines}"


# --- loading ---------------------------------------------------------------------------


def swagger_path() -> Path:
    return Path(os.environ.get(SWAGGER_ENV) or DEFAULT_SWAGGER)


@cache
def _load(path: Path) -> HarborContract | None:
    if not path.is_file():
        return None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open(encoding="utf-8") as file:
        spec = yaml.load(file, Loader=loader)  # noqa: S506 - a safe loader
    return HarborContract(spec)


def load_contract() -> HarborContract | None:
    """Harbor's swagger, parsed once per process; None when the file is absent."""
    return _load(swagger_path())


def skip_reason() -> str:
    return f"Harbor's swagger.yaml not found at {swagger_path()}; contract test skipped"


def check_exchange(
    method: str,
    path: str,
    query_params: Mapping[str, str] | Iterable[tuple[str, str]],
    status: int,
    headers: Mapping[str, str],
    body_bytes: bytes,
) -> list[str]:
    """``HarborContract.check_exchange`` on the loaded swagger (no problems without it)."""
    contract = load_contract()
    if contract is None:
        return []
    return contract.check_exchange(method, path, query_params, status, headers, body_bytes)


# --- helpers ---------------------------------------------------------------------------


def _split(path: str) -> tuple[str, ...]:
    """Segments of ``path``, one leading and one trailing slash ignored."""
    trimmed = path.partition("?")[0].removeprefix("/")
    trimmed = trimmed.removesuffix("/")
    return tuple(trimmed.split("/")) if trimmed else ()


def _is_param(segment: str) -> bool:
    return segment.startswith("{") and segment.endswith("}")


def _fits(template: tuple[str, ...], segments: tuple[str, ...]) -> bool:
    if len(template) != len(segments):
        return False
    return all(
        bool(seg) if _is_param(t) else t == unquote(seg)
        for t, seg in zip(template, segments, strict=True)
    )


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if isinstance(kind, str) and "$ref" not in schema:
        widened = {**schema, "type": [kind, "null"]}
        if "enum" in widened:
            widened["enum"] = [*widened["enum"], None]
        return widened
    return {"anyOf": [schema, {"type": "null"}]}


def _is_json(content_type: str) -> bool:
    kind = content_type.split(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def _int_param(query: list[tuple[str, str]], name: str, default: int) -> int | None:
    values = [v for k, v in query if k == name]
    if not values or values[-1] == "":
        return default
    return int(values[-1]) if values[-1].isdigit() else None


def _clip(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "…"


def _where(error: ValidationError) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)


def _leaves(error: ValidationError) -> list[ValidationError]:
    """A nullable ``anyOf`` failure of a non-null value is the failures of its other branch."""
    if error.validator != "anyOf" or not error.context:
        return [error]
    branches: dict[Any, list[ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    real = [errs for errs in branches.values() if not _only_not_null(errs)]
    if len(real) != 1:
        return [error]
    return [leaf for sub in real[0] for leaf in _leaves(sub)]


def _only_not_null(errors: list[ValidationError]) -> bool:
    return (
        len(errors) == 1 and errors[0].validator == "type" and errors[0].validator_value == "null"
    )


def _schema_problems(validator: Draft7Validator, data: Any) -> list[str]:
    errors = [leaf for error in validator.iter_errors(data) for leaf in _leaves(error)]
    errors.sort(key=lambda e: [str(p) for p in e.absolute_path])
    problems = []
    for error in errors[:_MAX_PROBLEMS]:
        message = error.message if len(error.message) <= 300 else error.message[:300] + "…"
        problems.append(f"body {_where(error)}: {message}")
    if len(errors) > _MAX_PROBLEMS:
        problems.append(f"… and {len(errors) - _MAX_PROBLEMS} more")
    return problems


def _error_body_problems(method: str, body: bytes) -> list[str]:
    if method == "HEAD":
        return []
    try:
        data = json.loads(body)
    except ValueError:
        return [f"the error body is not Harbor's JSON error body: {_clip(body)}"]
    return [f"error {p}" for p in _schema_problems(_ERROR_BODY, data)]
