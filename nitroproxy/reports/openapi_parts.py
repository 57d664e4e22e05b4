"""The building blocks of the admin API's OpenAPI document (``reports/openapi.py`` and
``reports/openapi_rights.py``): schema shorthands, parameters, responses, operations."""

from __future__ import annotations

from typing import Any

INT: dict[str, Any] = {"type": "integer"}
NUM: dict[str, Any] = {"type": "number"}
STR: dict[str, Any] = {"type": "string"}
BOOL: dict[str, Any] = {"type": "boolean"}
PERIOD = r"^\d{4}-(0[1-9]|1[0-2])$"
TOKENS = (
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)
ERRORS = {
    "400": "invalid input; `error.param` names it",
    "401": "no key, or an unknown, revoked or expired key",
    "403": "a valid key that is not the admin key",
    "404": "no such user or key",
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def null(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
        "additionalProperties": False,
    }


def page(item: str) -> dict[str, Any]:
    return obj(
        {
            "data": {"type": "array", "items": ref(item)},
            "has_more": {"type": "boolean"},
        }
    )


def responses(ok: str, schema: str | None, *errors: str, csv: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": ref(schema) if schema else {}}}
    if csv:
        content["text/csv"] = {"schema": {"type": "string"}}
    out: dict[str, Any] = {ok: {"description": "success", "content": content}}
    for status in ("401", "403", *errors):
        out[status] = {
            "description": ERRORS[status],
            "content": {"application/json": {"schema": ref("Error")}},
        }
    return out


def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


def path(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1},
    }


def body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": ref(schema)}}}


def op(op_id: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"operationId": op_id, "summary": summary, "responses": responses, **extra}
