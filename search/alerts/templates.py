"""Annotation templates: ``{{ name }}`` placeholders filled from one alert's values.

Names: ``rule``, ``severity``, ``count``, ``sample`` (the newest matching
line), ``window`` (e.g. ``5m``), and ``group.<field>`` for the rule's
``group_by`` field.  Anything else is a :class:`TemplateError`, found when the
rule is loaded; at render time a missing value is an error too, shown on the
rule while the others keep working.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from podlog.errors import PodlogError

__all__ = ["TemplateError", "check_template", "render_template"]

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_NAMES = ("rule", "severity", "count", "sample", "window")
_MAX_VALUE = 1024


class TemplateError(PodlogError):
    """A template names something no alert has, or does not close a placeholder."""


def check_template(template: str, group_by: str | None) -> None:
    """Raise :class:`TemplateError` if ``template`` uses a name its rule cannot fill."""
    for match in _PLACEHOLDER.finditer(template):
        name = match.group(1)
        if name in _NAMES:
            continue
        if name.startswith("group."):
            field = name.removeprefix("group.")
            if group_by is None:
                raise TemplateError(f"{{{{ {name} }}}} at position {match.start()}: the rule has no group_by")
            if field != group_by:
                raise TemplateError(
                    f"{{{{ {name} }}}} at position {match.start()}: the rule groups by {group_by}, not {field}"
                )
            continue
        valid = ", ".join([*_NAMES, "group.<field>"])
        raise TemplateError(f"unknown name {name!r} at position {match.start()}; use one of {valid}")
    leftover = _PLACEHOLDER.sub("", template)
    if "{{" in leftover or "}}" in leftover:
        raise TemplateError("a {{ placeholder }} is not closed")


def render_template(template: str, values: Mapping[str, str], group: Mapping[str, str]) -> str:
    """``template`` with each placeholder replaced; TemplateError for a value that is missing."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        value = group.get(name.removeprefix("group.")) if name.startswith("group.") else values.get(name)
        if value is None:
            raise TemplateError(f"no value for {{{{ {name} }}}}")
        return value[:_MAX_VALUE]

    return _PLACEHOLDER.sub(fill, template)
