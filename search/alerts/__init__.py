"""Alerts on log queries: rules (YAML), an evaluator over the search backends, notifications."""

__all__ = ["Rule", "RuleError", "load_rules"]

from search.alerts.rules import Rule, RuleError, load_rules
