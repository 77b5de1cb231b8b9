"""Found by the lifecycle model (PODLOG_MODEL_EXPLORE=1): the sidecar's live file never sized.  Copytruncated,
its new head unknown, it was not opened after a restart until its first line would be whole, and its size
was never recorded: deleted with an unterminated line, its bytes would not have been counted.

Run: PYTHONPATH=. .venv/bin/python tests/integration/collector/repros/r14_live_file_never_sized.py
The steps are the replay test of the same name in test_lifecycle_model.py.
"""
import tests.integration.collector.test_lifecycle_model as model
from tests.integration.collector.test_lifecycle_model import (
    LifecycleModel,
    test_a_known_generation_without_a_whole_first_line_is_sized_while_it_waits,
)

model.event = lambda *a, **k: None
test_a_known_generation_without_a_whole_first_line_is_sized_while_it_waits(LifecycleModel())
print('MODEL PASSED')
