"""The swagger contract validator can fail: matching, strictness, nulls, types, query, status."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft7Validator
from tests.support import harbor_contract
from tests.support.harbor_contract import HarborContract

ERRORS = {"$ref": "#/definitions/Errors"}
SPEC: dict[str, Any] = {
    "swagger": "2.0",
    "basePath": "/api/v2.0",
    "produces": ["application/json"],
    "parameters": {
        "page": {"name": "page", "in": "query", "type": "integer", "default": 1},
        "pageSize": {"name": "page_size", "in": "query", "type": "integer", "default": 10},
        "userId": {"name": "user_id", "in": "path", "type": "integer", "required": True},
    },
    "responses": {
        "200": {"description": "Success", "headers": {"X-Request-Id": {"type": "string"}}},
        "404": {"description": "Not found", "schema": ERRORS},
    },
    "paths": {
        "/users": {
            "get": {
                "operationId": "listUsers",
                "parameters": [{"$ref": "#/parameters/page"}, {"$ref": "#/parameters/pageSize"}],
                "responses": {
                    "200": {
                        "description": "Users",
                        "headers": {"X-Total-Count": {"type": "integer"}, "Link": {}},
                        "schema": {"type": "array", "items": {"$ref": "#/definitions/User"}},
                    }
                },
            }
        },
        "/users/current": {
            "get": {
                "operationId": "getCurrentUser",
                "responses": {
                    "200": {"description": "Me", "schema": {"$ref": "#/definitions/User"}}
                },
            }
        },
        "/users/{user_id}": {
            "parameters": [{"$ref": "#/parameters/userId"}],
            "get": {
                "operationId": "getUser",
                "responses": {
                    "200": {"description": "A user", "schema": {"$ref": "#/definitions/User"}},
                    "404": {"$ref": "#/responses/404"},
                },
            },
            "delete": {
                "operationId": "deleteUser",
                "responses": {"200": {"$ref": "#/responses/200"}},
            },
        },
        "/projects/{project_name_or_id}/metadatas/": {
            "get": {
                "operationId": "listProjectMetadatas",
                "parameters": [
                    {"name": "project_name_or_id", "in": "path", "type": "string", "required": True}
                ],
                "responses": {
                    "200": {
                        "description": "A map",
                        "schema": {"type": "object", "additionalProperties": {"type": "string"}},
                    }
                },
            }
        },
        "/ping": {
            "get": {
                "operationId": "getPing",
                "produces": ["text/plain"],
                "responses": {"200": {"description": "Pong", "schema": {"type": "string"}}},
            }
        },
        "/combined": {
            "get": {
                "operationId": "getCombined",
                "responses": {
                    "200": {"description": "", "schema": {"$ref": "#/definitions/Combined"}},
                    "default": {"description": "Any error", "schema": ERRORS},
                },
            }
        },
    },
    "definitions": {
        "User": {
            "type": "object",
            "properties": {
                "user_id": {"type": "integer", "format": "int64"},
                "username": {"type": "string"},
                "email": {"type": "string", "x-nullable": True},
                "realname": {"type": "string", "x-isnullable": True},
                "sysadmin_flag": {"type": "boolean", "x-omitempty": False},
                "creation_time": {"type": "string", "format": "date-time", "readOnly": True},
                "group": {"$ref": "#/definitions/Group", "x-nullable": True},
                "extra": {"type": "object"},
            },
        },
        "Group": {"type": "object", "properties": {"id": {"type": "integer"}}},
        "Combined": {
            "allOf": [
                {"$ref": "#/definitions/Group"},
                {"type": "object", "properties": {"name": {"type": "string"}}},
            ]
        },
        "Errors": {
            "type": "object",
            "properties": {"errors": {"type": "array", "items": {"$ref": "#/definitions/Error"}}},
        },
        "Error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}
JSON = {"Content-Type": "application/json", "X-Request-Id": "r1"}
USER = {"user_id": 1, "username": "admin", "sysadmin_flag": True}
NOT_FOUND = {"errors": [{"code": "NOT_FOUND", "message": "no such thing"}]}


@pytest.fixture(scope="module")
def contract() -> HarborContract:
    return HarborContract(SPEC)


def _check(
    contract: HarborContract,
    path: str,
    body: Any = None,
    *,
    method: str = "GET",
    status: int = 200,
    query: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> list[str]:
    raw = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    return contract.check_exchange(
        method, "/api/v2.0" + path, query or [], status, headers or JSON, raw
    )


# --- matching --------------------------------------------------------------------------


def _matched(contract: HarborContract, method: str, path: str) -> str | None:
    op = contract.match(method, path)
    return op.operation_id if op else None


def test_a_literal_segment_wins_over_a_parameter(contract: HarborContract) -> None:
    assert _matched(contract, "GET", "/users/current") == "getCurrentUser"
    assert _matched(contract, "GET", "/users/42") == "getUser"


def test_matching_looks_at_the_method_first(contract: HarborContract) -> None:
    assert _matched(contract, "DELETE", "/users/current") == "deleteUser"
    assert _matched(contract, "POST", "/users/current") is None


def test_a_parameter_takes_exactly_one_non_empty_segment(contract: HarborContract) -> None:
    assert _matched(contract, "GET", "/users/a%2Fb") == "getUser"
    assert _matched(contract, "GET", "/users/1/2") is None
    assert _matched(contract, "GET", "/users//") is None


def test_a_trailing_slash_template_matches_with_and_without_it(contract: HarborContract) -> None:
    assert _matched(contract, "GET", "/projects/library/metadatas/") == "listProjectMetadatas"
    assert _matched(contract, "GET", "/projects/library/metadatas") == "listProjectMetadatas"


def test_path_level_parameters_belong_to_each_operation(contract: HarborContract) -> None:
    assert contract.by_id["deleteUser"].parameter_names("path") == {"user_id"}


# --- bodies ----------------------------------------------------------------------------


def test_a_body_as_swagger_describes_it_passes(contract: HarborContract) -> None:
    user = {**USER, "email": None, "creation_time": "2024-05-01T10:00:00Z", "group": {"id": 3}}
    assert _check(contract, "/users/current", user) == []


def test_a_field_harbor_lacks_is_flagged(contract: HarborContract) -> None:
    problems = _check(contract, "/users/current", {**USER, "password": "x"})
    assert len(problems) == 1
    assert "'password' was unexpected" in problems[0]


def test_a_nested_field_harbor_lacks_is_flagged_with_its_place(contract: HarborContract) -> None:
    problems = _check(contract, "/users/current", {**USER, "group": {"id": 1, "name": "g"}})
    assert problems == [
        "body $.group: Additional properties are not allowed ('name' was unexpected)"
    ]


def test_an_explicit_additional_properties_map_takes_any_key(contract: HarborContract) -> None:
    assert _check(contract, "/projects/p/metadatas/", {"public": "true", "x": "y"}) == []
    assert _check(contract, "/projects/p/metadatas/", {"public": True}) != []


def test_an_object_without_properties_takes_anything(contract: HarborContract) -> None:
    assert _check(contract, "/users/current", {**USER, "extra": {"any": [1, "thing"]}}) == []


def test_null_only_where_swagger_says_x_nullable(contract: HarborContract) -> None:
    nullable = {**USER, "email": None, "realname": None, "group": None}
    assert _check(contract, "/users/current", nullable) == []
    problems = _check(contract, "/users/current", {**USER, "username": None})
    assert problems == ["body $.username: None is not of type 'string'"]


def test_a_wrong_type_is_flagged(contract: HarborContract) -> None:
    problems = _check(contract, "/users/current", {**USER, "user_id": "1"})
    assert problems == ["body $.user_id: '1' is not of type 'integer'"]
    assert _check(contract, "/users/current", {**USER, "group": {"id": "3"}}) == [
        "body $.group.id: '3' is not of type 'integer'"
    ]
    assert _check(
        contract,
        "/users",
        [USER, {**USER, "sysadmin_flag": "yes"}],
        headers={**JSON, "X-Total-Count": "2"},
    ) == ["body $[1].sysadmin_flag: 'yes' is not of type 'boolean'"]


def test_date_time_is_checked_as_a_string(contract: HarborContract) -> None:
    assert _check(contract, "/users/current", {**USER, "creation_time": "yesterday"}) == []
    assert _check(contract, "/users/current", {**USER, "creation_time": 1714557600}) != []


def test_a_field_harbor_always_sends_must_be_there(contract: HarborContract) -> None:
    problems = _check(contract, "/users/current", {"user_id": 1})
    assert problems == ["body $: 'sysadmin_flag' is a required property"]


def test_all_of_is_one_strict_object(contract: HarborContract) -> None:
    assert _check(contract, "/combined", {"id": 1, "name": "n"}) == []
    assert "'other' was unexpected" in _check(contract, "/combined", {"id": 1, "other": 2})[0]


def test_a_body_that_is_not_json_is_flagged(contract: HarborContract) -> None:
    assert _check(contract, "/users/current", b"<html>") != []
    text = {"Content-Type": "text/html", "X-Request-Id": "r1"}
    problems = _check(contract, "/users/current", b"<html>", headers=text)
    assert problems[0].startswith("expected a JSON body")


def test_a_text_operation_is_not_parsed_as_json(contract: HarborContract) -> None:
    text = {"Content-Type": "text/plain; charset=utf-8", "X-Request-Id": "r1"}
    assert _check(contract, "/ping", b"Pong", headers=text) == []


def test_a_body_where_swagger_declares_none_is_flagged(contract: HarborContract) -> None:
    assert _check(contract, "/users/1", method="DELETE") == []
    problems = _check(contract, "/users/1", {"deleted": True}, method="DELETE")
    assert problems[0].startswith("a 200 body was sent where swagger declares none")


# --- query, status, headers ------------------------------------------------------------


def test_an_undeclared_query_parameter_is_flagged(contract: HarborContract) -> None:
    listed = {**JSON, "X-Total-Count": "1"}
    assert _check(contract, "/users", [USER], query=[("page", "1")], headers=listed) == []
    problems = _check(contract, "/users", [USER], query=[("debug", "1")], headers=listed)
    assert problems == ["query parameter 'debug' is not declared by listUsers"]


def test_an_undeclared_status_is_flagged(contract: HarborContract) -> None:
    problems = _check(contract, "/users/current", NOT_FOUND, status=404)
    assert problems == ["status 404 is not declared (declared: 200)"]
    assert _check(contract, "/users/7", NOT_FOUND, status=404) == []


def test_a_default_response_admits_any_status(contract: HarborContract) -> None:
    assert _check(contract, "/combined", NOT_FOUND, status=409) == []


def test_the_size_limit_and_throttle_statuses_need_only_the_error_body(
    contract: HarborContract,
) -> None:
    assert _check(contract, "/users/current", NOT_FOUND, status=413) == []
    assert _check(contract, "/users/current", {"message": "slow down"}, status=429) != []


def test_an_error_body_must_be_harbors(contract: HarborContract) -> None:
    assert _check(contract, "/users/7", {"message": "gone"}, status=404) == [
        "error body $: 'errors' is a required property",
        "error body $: Additional properties are not allowed ('message' was unexpected)",
    ]
    detailed = {"errors": [{"code": "NOT_FOUND", "message": "m", "detail": {}}]}
    assert "'detail' was unexpected" in _check(contract, "/users/7", detailed, status=404)[0]
    assert _check(contract, "/users/7", {"errors": []}, status=404) != []
    assert _check(contract, "/users/7", b"not found", status=404) != []


def test_a_list_must_carry_x_total_count(contract: HarborContract) -> None:
    problems = _check(contract, "/users", [USER])
    assert problems == ["response header x-total-count is declared but missing"]


def test_link_is_required_only_when_there_are_more_pages(contract: HarborContract) -> None:
    last_page = {**JSON, "X-Total-Count": "11"}
    query = [("page", "2"), ("page_size", "10")]
    assert _check(contract, "/users", [USER], query=query, headers=last_page) == []
    more = {**JSON, "X-Total-Count": "11"}
    problems = _check(contract, "/users", [USER] * 10, headers=more)
    assert problems == ['X-Total-Count 11 exceeds page 1 of 10 but Link has no rel="next"']
    linked = {**more, "Link": '</api/v2.0/users?page=2&page_size=10>; rel="next"'}
    assert _check(contract, "/users", [USER] * 10, headers=linked) == []


# --- paths outside the swagger ---------------------------------------------------------


def test_an_unknown_path_may_only_be_harbors_404_or_405(contract: HarborContract) -> None:
    assert _check(contract, "/nothing/here", NOT_FOUND, status=404) == []
    assert _check(contract, "/users/current", NOT_FOUND, method="POST", status=405) == []
    assert _check(contract, "/nothing/here", {"detail": "Not Found"}, status=404) != []
    problems = _check(contract, "/nothing/here", {"ok": True})
    assert problems == ["GET /nothing/here is no operation of Harbor's API, yet answered 200"]


def test_dockyard_only_endpoints_and_other_faces_are_not_checked(contract: HarborContract) -> None:
    assert _check(contract, "/openapi.json", {"openapi": "3.1.0"}) == []
    assert contract.check_exchange("GET", "/v2/_catalog", [], 200, JSON, b"{}") == []
    assert contract.check_exchange("GET", "/api/v2.00/x", [], 200, JSON, b"{}") == []


# --- declarations ----------------------------------------------------------------------


def test_a_declaration_as_swagger_has_it_passes(contract: HarborContract) -> None:
    assert contract.check_declaration("GET", "/users", "listUsers", ["page"], 200) == []
    assert contract.check_declaration("GET", "/openapi.json", None, []) == []


def test_a_declaration_that_differs_from_swagger_is_flagged(contract: HarborContract) -> None:
    assert contract.check_declaration("GET", "/users", "listAllUsers", []) == [
        "listAllUsers is not an operationId of Harbor's swagger"
    ]
    assert contract.check_declaration("POST", "/users", "listUsers", []) != []
    assert contract.check_declaration("GET", "/users/{id}", "getUser", []) == [
        "getUser: path /users/{id} but swagger says /users/{user_id}",
        "getUser: path parameters ['id'] but swagger declares ['user_id']",
    ]
    assert contract.check_declaration("GET", "/users", "listUsers", ["q"]) != []
    assert contract.check_declaration("GET", "/users", "listUsers", [], 201) != []
    assert contract.check_declaration("GET", "/debug", None, []) != []


# --- the real swagger, when it is there ------------------------------------------------


@pytest.fixture(scope="module")
def harbor() -> HarborContract:
    found = harbor_contract.load_contract()
    if found is None:
        pytest.skip(harbor_contract.skip_reason())
    return found


def test_every_harbor_definition_converts_to_a_valid_json_schema(harbor: HarborContract) -> None:
    Draft7Validator.check_schema({"definitions": harbor.definitions})
    for op in harbor.operations:
        for response in op.responses.values():
            if "schema" in response:
                Draft7Validator.check_schema(harbor.to_json_schema(response["schema"]))


def test_harbors_own_routing_precedence(harbor: HarborContract) -> None:
    assert _matched(harbor, "GET", "/users/current") == "getCurrentUserInfo"
    assert _matched(harbor, "GET", "/users/search") == "searchUsers"
    assert _matched(harbor, "GET", "/users/12") == "getUser"
    assert _matched(harbor, "GET", "/projects/library/metadatas") == "listProjectMetadatas"
