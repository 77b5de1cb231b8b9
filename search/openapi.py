"""The OpenAPI 3.1 description of the search API, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from search.backends.base import FILTER_FIELDS

__all__ = ["openapi_spec"]


def _param(name: str, description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": schema, **extra}


_QUERY_PARAMS: list[dict[str, Any]] = [
    _param(
        "q",
        'Lucene-style query: words and "phrases" search message; field:value, AND/OR/NOT, '
        "-term, ranges [a TO b] and field:>n. Leading wildcards and /regex/ are off unless "
        "the server allows them.",
        {"type": "string"},
    ),
    _param(
        "start",
        "Inclusive start: now, now-15m (s m h d w), epoch milliseconds or RFC 3339. "
        "Default: the server's default range before now.",
        {"type": "string"},
    ),
    _param("end", "Exclusive end, same forms as start. Default: now.", {"type": "string"}),
    *[
        _param(
            name,
            f"Exact {path}; repeat the parameter to match any of several values.",
            {"type": "array", "items": {"type": "string"}},
            style="form",
            explode=True,
        )
        for name, path in FILTER_FIELDS.items()
    ],
]

_ERROR = {
    "type": "object",
    "description": "Every error: a message for people, the request id the server log files detail under.",
    "properties": {
        "error": {"type": "string"},
        "request_id": {"type": "string", "description": "Quote it to an operator: the server log has the detail."},
        "position": {"type": "integer", "description": "Character offset in q, when known."},
        "parameter": {"type": "string", "description": "The query parameter at fault, when known."},
    },
    "required": ["error", "request_id"],
}

_RECORD = {
    "type": "object",
    "description": "A podlog record as indexed (schema 1, see docs/record.md).",
    "additionalProperties": True,
    "properties": {
        "@timestamp": {"type": "string"},
        "timestamp_ns": {"type": "integer"},
        "message": {"type": "string"},
        "stream": {"type": "string", "enum": ["stdout", "stderr"]},
        "level": {"type": ["string", "null"]},
        "kubernetes": {"type": "object"},
        "log": {"type": "object"},
        "event": {"type": "object", "properties": {"id": {"type": "string"}}},
    },
}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if headers:
        response["headers"] = headers
    return response


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}}}


def _responses(ok: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
    return {
        "200": {"description": "OK", "content": {media: {"schema": ok}}},
        "400": _error("Invalid query or parameter; position or parameter says where."),
        "401": _error("Not authenticated."),
        "403": _error("Authenticated, but not allowed to use podlog."),
        "429": _error("Too many requests (rate limit), or too many live tails open.", _RETRY_AFTER),
        "500": _error("Unexpected server error; the request id finds it in the server log."),
        "502": _error("The index failed to answer."),
        "503": _error("The index is unavailable."),
        "504": _error("The query exceeded the server's time limit."),
    }


def openapi_spec() -> dict[str, Any]:
    """The OpenAPI document."""
    record_list = {"type": "array", "items": {"$ref": "#/components/schemas/Record"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "podlog search API",
            "version": "1",
            "description": (
                "Search Kubernetes container logs. Every endpoint returns only records from "
                "namespaces the caller's identity may read. Results are newest first by "
                "(timestamp_ns, log.offset, event.id)."
            ),
        },
        "components": {
            "schemas": {"Error": _ERROR, "Record": _RECORD},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
            },
        },
        "security": [{"bearer": []}, {"basic": []}, {}],
        "paths": {
            "/api/search": {
                "get": {
                    "summary": "One page of matching records, newest first.",
                    "parameters": [
                        *_QUERY_PARAMS,
                        _param("size", "Hits per page (server caps it).", {"type": "integer", "default": 100}),
                        _param("cursor", "next_cursor of the previous page.", {"type": "string"}),
                    ],
                    "responses": _responses(
                        {
                            "type": "object",
                            "properties": {
                                "hits": record_list,
                                "total": {"type": "integer"},
                                "total_exact": {"type": "boolean"},
                                "next_cursor": {"type": ["string", "null"]},
                            },
                        }
                    ),
                }
            },
            "/api/histogram": {
                "get": {
                    "summary": "Match counts over the time range, with an automatic round interval.",
                    "parameters": [
                        *_QUERY_PARAMS,
                        _param("buckets", "Most buckets wanted.", {"type": "integer", "default": 60}),
                    ],
                    "responses": _responses(
                        {
                            "type": "object",
                            "properties": {
                                "start_ns": {"type": "integer"},
                                "end_ns": {"type": "integer"},
                                "interval_ns": {"type": "integer"},
                                "total": {"type": "integer"},
                                "buckets": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "start_ns": {"type": "integer"},
                                            "count": {"type": "integer"},
                                        },
                                    },
                                },
                            },
                        }
                    ),
                }
            },
            "/api/top": {
                "get": {
                    "summary": "Most frequent values of a filter field among matches.",
                    "parameters": [
                        _param(
                            "field", "A filter name.", {"type": "string", "enum": list(FILTER_FIELDS)}, required=True
                        ),
                        *_QUERY_PARAMS,
                        _param("size", "Values wanted.", {"type": "integer", "default": 10}),
                    ],
                    "responses": _responses(
                        {
                            "type": "object",
                            "properties": {
                                "field": {"type": "string"},
                                "values": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "value": {"type": "string"},
                                            "count": {"type": "integer"},
                                        },
                                    },
                                },
                            },
                        }
                    ),
                }
            },
            "/api/context/{event_id}": {
                "get": {
                    "summary": "Lines before and after a record from the same file and stream, in file order.",
                    "parameters": [
                        {"name": "event_id", "in": "path", "required": True, "schema": {"type": "string"}},
                        _param("before", "Lines before.", {"type": "integer", "default": 20}),
                        _param("after", "Lines after.", {"type": "integer", "default": 20}),
                    ],
                    "responses": {
                        **_responses(
                            {
                                "type": "object",
                                "properties": {
                                    "before": record_list,
                                    "anchor": {"$ref": "#/components/schemas/Record"},
                                    "after": record_list,
                                },
                            }
                        ),
                        "404": _error("No such record, or not in an allowed namespace."),
                    },
                }
            },
            "/api/tail": {
                "get": {
                    "summary": (
                        "Live tail as server-sent events: 'ready', then 'records' batches as lines are "
                        "indexed; an 'error' event ends it (revoked credential, maximum duration, idle)."
                    ),
                    "parameters": _QUERY_PARAMS,
                    "responses": _responses(
                        {
                            "type": "object",
                            "description": (
                                "One server-sent event. ready: {poll_seconds}; records: {records: [Record]}; "
                                "error (last): {error, reason: revoked | max_duration | idle | error}."
                            ),
                            "properties": {
                                "event": {"type": "string", "enum": ["ready", "records", "error"]},
                                "data": {"type": "string", "description": "JSON, as described per event."},
                            },
                            "required": ["event", "data"],
                        },
                        media="text/event-stream",
                    ),
                }
            },
            "/api/export": {
                "get": {
                    "summary": "Every match (up to the server's cap) as NDJSON, newest first.",
                    "parameters": [
                        *_QUERY_PARAMS,
                        _param("limit", "Most records to export.", {"type": "integer"}),
                    ],
                    "responses": _responses(
                        {"type": "string", "description": "One JSON record per line."},
                        media="application/x-ndjson",
                    ),
                }
            },
            "/api/whoami": {
                "get": {
                    "summary": "The caller's identity and namespace patterns.",
                    "responses": _responses(
                        {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "namespaces": {"type": "array", "items": {"type": "string"}},
                                "auth": {"type": "string", "enum": ["token", "basic", "header", "none"]},
                            },
                            "required": ["name", "namespaces", "auth"],
                        }
                    ),
                }
            },
        },
    }
