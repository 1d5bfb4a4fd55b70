"""The REST API's OpenAPI 3 document, served at ``/openapi.json`` and tested against the server."""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_ERROR = {"$ref": "#/components/schemas/Error"}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_TASK = {"name": "task", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "task id, e.g. orders:<partition id> or orders:segment-3-of-32"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {401: "missing or wrong bearer token", 404: "no such connector or task",
            409: "not possible in the current state"}
    return {str(c): _json(_ERROR, text[c]) for c in codes}


def openapi_document() -> dict[str, Any]:
    nullable_int = {"type": "integer", "nullable": True}
    task_status = {
        "type": "object",
        "required": ["id", "state", "worker_id"],
        "properties": {
            "id": {"type": "string"},
            "state": {"type": "string", "enum": ["RUNNING", "PAUSED", "FAILED", "FINISHED"]},
            "worker_id": {"type": "string"},
            "trace": {"type": "string", "nullable": True},
            "failed_at_ms": nullable_int,
        },
    }
    position = {
        "type": "object",
        "required": ["id", "partition", "state", "records", "caught_up"],
        "properties": {
            "id": {"type": "string"},
            "connector": {"type": "string"},
            "partition": {"type": "object"},
            "state": {"type": "string"},
            "worker_id": {"type": "string"},
            "trace": {"type": "string", "nullable": True},
            "failed_at_ms": nullable_int,
            "records": {"type": "integer"},
            "position": {"type": "object", "nullable": True},
            "caught_up": {"type": "boolean"},
            "millis_behind_latest": nullable_int,
            "iterator_age_ms": nullable_int,
            "newest_record_ms": nullable_int,
        },
    }
    connector_status = {
        "type": "object",
        "required": ["name", "connector", "tasks", "type"],
        "properties": {
            "name": {"type": "string"},
            "type": {"type": "string", "enum": ["source"]},
            "connector": {"type": "object", "required": ["state", "worker_id"], "properties": {
                "state": {"type": "string", "enum": ["RUNNING", "PAUSED", "STOPPED", "FAILED"]},
                "worker_id": {"type": "string"}, "trace": {"type": "string", "nullable": True}}},
            "tasks": {"type": "array", "items": task_status},
        },
    }
    health = {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"type": "string", "enum": ["OK", "DEGRADED", "FAILED"]},
            "checks": {"type": "object", "additionalProperties": {"type": "object", "required": ["status"],
                                                                   "properties": {
                                                                       "status": {"type": "string",
                                                                                  "enum": ["OK", "DEGRADED", "FAILED"]},
                                                                       "reason": {"type": "string", "nullable": True}}}},
            "time_ms": {"type": "integer"},
        },
    }
    accepted = {"description": "accepted (done when the response comes)"}
    paths: dict[str, Any] = {
        "/": {"get": {"summary": "the worker", "security": [], "responses": {"200": _json({"type": "object"}),
                                                                              **_errors(401)}}},
        "/health": {"get": {"summary": "OK, DEGRADED or FAILED with each check's reason", "security": [],
                            "parameters": [{"name": "strict", "in": "query", "required": False,
                                            "schema": {"type": "string"},
                                            "description": "answer 503 for DEGRADED too"}],
                            "responses": {"200": _json(health), "503": _json(health, "FAILED (or DEGRADED, strict)")}}},
        "/connectors": {"get": {"summary": "connector names", "responses": {
            "200": _json({"type": "array", "items": {"type": "string"}}), **_errors(401)}}},
        "/connectors/{name}": {"get": {"summary": "a connector and its tasks", "parameters": [_NAME], "responses": {
            "200": _json({"type": "object", "required": ["name", "tasks", "type"]}), **_errors(401, 404)}}},
        "/connectors/{name}/status": {"get": {"summary": "connector and task states", "parameters": [_NAME],
                                              "responses": {"200": _json(connector_status), **_errors(401, 404)}}},
        "/connectors/{name}/tasks": {"get": {"summary": "tasks", "parameters": [_NAME], "responses": {
            "200": _json({"type": "array", "items": {"type": "object", "required": ["id"]}}), **_errors(401, 404)}}},
        "/connectors/{name}/tasks/{task}/status": {"get": {"summary": "one task's state", "parameters": [_NAME, _TASK],
                                                           "responses": {"200": _json(task_status),
                                                                         **_errors(401, 404)}}},
        "/connectors/{name}/tasks/{task}/restart": {"post": {
            "summary": "restart a FAILED task from its committed offset", "parameters": [_NAME, _TASK],
            "responses": {"204": {"description": "restarted"}, **_errors(401, 404, 409)}}},
        "/connectors/{name}/positions": {"get": {
            "summary": "per task (source partition): position, lag, records; the partition graphs", "parameters": [_NAME],
            "responses": {"200": _json({"type": "object", "required": ["tasks", "graphs"], "properties": {
                "tasks": {"type": "array", "items": position}, "graphs": {"type": "array"},
                "snapshots": {"type": "array"}}}), **_errors(401, 404)}}},
        "/connectors/{name}/pause": {"put": {"summary": "stop reading (within one poll interval)",
                                             "parameters": [_NAME],
                                             "responses": {"202": accepted, **_errors(401, 404, 409)}}},
        "/connectors/{name}/resume": {"put": {"summary": "read on from the same positions (or start if STOPPED)",
                                              "parameters": [_NAME], "responses": {"202": accepted,
                                                                                   **_errors(401, 404, 409)}}},
        "/connectors/{name}/stop": {"put": {"summary": "drain, commit offsets and shut the tasks down",
                                            "parameters": [_NAME], "responses": {"202": accepted,
                                                                                 **_errors(401, 404, 409)}}},
        "/connectors/{name}/restart": {"post": {"summary": "stop and start again from the committed offsets",
                                                "parameters": [_NAME], "responses": {"204": {"description": "done"},
                                                                                     **_errors(401, 404, 409)}}},
        "/connectors/{name}/offsets": {
            "get": {"summary": "committed offsets", "parameters": [_NAME], "responses": {
                "200": _json({"type": "object", "required": ["offsets"], "properties": {"offsets": {
                    "type": "array", "items": {"type": "object", "required": ["partition", "offset"]}}}}),
                **_errors(401, 404)}},
            "delete": {"summary": "reset every offset of a STOPPED connector (refused while it runs)",
                       "parameters": [_NAME], "responses": {"200": _json({"type": "object"}),
                                                            **_errors(401, 404, 409)}},
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "dynamodb-kafka-bridge REST API", "version": "1",
                 "description": "Kafka Connect's REST shape where it fits, for one bridge worker."},
        "paths": paths,
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "required": ["error_code", "message"], "properties": {
                "error_code": {"type": "integer"}, "message": {"type": "string"}}}},
        },
    }
