"""``/api/alerts/rules``: the rules a caller's namespaces cover, and CRUD of the API's own rules.

A rule is visible to an identity when every namespace pattern of the rule is
covered by one of the identity's patterns; a rule without namespaces (it sees
every namespace) only to an identity that sees every namespace (``*``).  The
same test decides what an identity may create, replace or delete: a token for
namespace ``a`` manages only rules within ``a``.  Rules from files are listed
read-only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from search.alerts.rules import RuleError
from search.alerts.service import AlertService, RuleConflictError
from search.responses import error_response, json_response, request_id_of

__all__ = ["RulesApi", "covers"]

_MAX_BODY = 64 * 1024


def covers(allowed: Sequence[str], rule_namespaces: Sequence[str]) -> bool:
    """True when the patterns ``allowed`` cover every namespace the rule may see."""
    if "*" in allowed:
        return True
    if not rule_namespaces:
        return False
    return all(any(fnmatchcase(ns, pattern) for pattern in allowed) for ns in rule_namespaces)


class RulesApi:
    """The handlers behind ``/api/alerts/rules`` and ``/api/alerts/rules/{name}``."""

    def __init__(self, service: AlertService) -> None:
        self.service = service

    def visible(self, allowed: Sequence[str]) -> list[dict[str, Any]]:
        """Described rules an identity with ``allowed`` namespaces may see."""
        return [rule for rule in self.service.evaluator.describe() if covers(allowed, rule["namespaces"])]

    async def collection(self, request: Request, allowed: Sequence[str]) -> Response:
        """GET lists the visible rules; POST creates one (201)."""
        if request.method == "GET":
            return json_response({"rules": self.visible(allowed)})
        return await self._put(request, allowed, None)

    async def item(self, request: Request, allowed: Sequence[str]) -> Response:
        """GET one visible rule; PUT replaces an API rule; DELETE removes one (204)."""
        name = request.path_params["name"]
        found = next((rule for rule in self.visible(allowed) if rule["name"] == name), None)
        request_id = request_id_of(request)
        if found is None and request.method != "PUT":
            return error_response(f"no rule {name} you may see", 404, request_id)
        if request.method == "GET":
            return json_response(found)
        if found is not None and found["read_only"]:
            return error_response(f"rule {name} comes from a rules file and is read-only here", 409, request_id)
        if request.method == "DELETE":
            await self.service.delete_rule(name)
            return Response(status_code=204)
        if found is None and name in self.service.evaluator.rules:
            return error_response(f"no rule {name} you may see", 404, request_id)
        return await self._put(request, allowed, name)

    async def _put(self, request: Request, allowed: Sequence[str], name: str | None) -> Response:
        request_id = request_id_of(request)
        raw = await request.body()
        if len(raw) > _MAX_BODY:
            return error_response(f"a rule is at most {_MAX_BODY} bytes", 413, request_id)
        try:
            body = json.loads(raw)
        except ValueError:
            return error_response("the body must be a JSON object: a rule", 400, request_id)
        if not isinstance(body, dict):
            return error_response("the body must be a JSON object: a rule", 400, request_id)
        if name is not None:
            body.setdefault("name", name)
            if body["name"] != name:
                return error_response("the rule's name must match the URL", 400, request_id, parameter="name")
        namespaces = body.get("namespaces", [])
        scope = [namespaces] if isinstance(namespaces, str) else namespaces
        if isinstance(scope, list) and not covers(allowed, [str(n) for n in scope]):
            return error_response(
                "the rule's namespaces must lie within yours (list them under namespaces)", 403, request_id
            )
        try:
            rule = await self.service.put_rule(body, create=name is None)
        except RuleError as exc:
            return error_response(f"{exc.key}: {exc.reason}", 400, request_id, position=exc.position,
                                  parameter=exc.key)
        except RuleConflictError as exc:
            return error_response(str(exc), 409, request_id)
        described = next(r for r in self.service.evaluator.describe() if r["name"] == rule.name)
        return json_response(described, 201 if name is None else 200)
