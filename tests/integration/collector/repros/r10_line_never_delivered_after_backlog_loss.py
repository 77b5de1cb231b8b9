"""Found by the lifecycle model (PODLOG_MODEL_EXPLORE=1): the sidecar's 0.log was read to 1,024 bytes while
the spool refused (m7 emitted, in flight), then copytruncated, then podlog stopped cleanly.  The copy's drain
was checkpointed from where the generation had been read (684), not where it was acknowledged (373), so m7
was neither delivered nor counted lost.

Run: PYTHONPATH=. .venv/bin/python tests/integration/collector/repros/r10_line_never_delivered_after_backlog_loss.py
It ends in the model's AssertionError while the bug is there, and prints MODEL PASSED once fixed.
The steps are the replay test of the same name in test_lifecycle_model.py.
"""
import tests.integration.collector.test_lifecycle_model as model
from tests.integration.collector.test_lifecycle_model import (
    LifecycleModel,
    test_a_copy_drained_past_lines_in_flight_reads_them_again_after_a_restart,
)

model.event = lambda *a, **k: None
test_a_copy_drained_past_lines_in_flight_reads_them_again_after_a_restart(LifecycleModel())
print('MODEL PASSED')
