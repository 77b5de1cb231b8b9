"""Found by the lifecycle model (PODLOG_MODEL_EXPLORE=1): deleted files never finished.  The sidecar's file
was copytruncated and then deleted, both seen in one pass; found truncated, the deleted file went back
to ACTIVE after its copy was read, so nothing ever ended it.

Run: PYTHONPATH=. .venv/bin/python tests/integration/collector/repros/r12_deleted_files_never_finished.py
The steps are the replay test of the same name in test_lifecycle_model.py.
"""
import tests.integration.collector.test_lifecycle_model as model
from tests.integration.collector.test_lifecycle_model import (
    LifecycleModel,
    test_a_file_copytruncated_then_deleted_ends_at_its_end,
)

model.event = lambda *a, **k: None
test_a_file_copytruncated_then_deleted_ends_at_its_end(LifecycleModel())
print('MODEL PASSED')
