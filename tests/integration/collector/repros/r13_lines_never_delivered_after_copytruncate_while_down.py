# ruff: noqa: E501 - the command line to run it
"""Found by the lifecycle model (PODLOG_MODEL_EXPLORE=1): three lines of app never delivered.  The file was
held at an open stdout fragment while stderr went on, then copytruncated; the next generation kept the
per-stream resume offsets of the old one and skipped its first stdout lines as emitted already.

Run: PYTHONPATH=. .venv/bin/python tests/integration/collector/repros/r13_lines_never_delivered_after_copytruncate_while_down.py
The steps are the replay test of the same name in test_lifecycle_model.py.
"""
import tests.integration.collector.test_lifecycle_model as model
from tests.integration.collector.test_lifecycle_model import (
    LifecycleModel,
    test_a_generation_after_a_copytruncate_does_not_resume_where_the_last_one_did,
)

model.event = lambda *a, **k: None
test_a_generation_after_a_copytruncate_does_not_resume_where_the_last_one_did(LifecycleModel())
print('MODEL PASSED')
