# ruff: noqa: E501 - the model's own printout, replayed as it is
"""Found by the lifecycle model (PODLOG_MODEL_EXPLORE=1): the sidecar's 0.log was read to 1,024 bytes while
the spool refused (m7 emitted, in flight), then copytruncated, then podlog stopped cleanly.  The copy's drain
was checkpointed from where the generation had been read (684), not where it was acknowledged (373), so m7
was neither delivered nor counted lost.

Run: PYTHONPATH=. .venv/bin/python tests/integration/collector/repros/r10_line_never_delivered_after_backlog_loss.py
It ends in the model's AssertionError while the bug is there, and prints MODEL PASSED once fixed.
"""
import tests.integration.collector.test_lifecycle_model as model
from tests.integration.collector.test_lifecycle_model import LifecycleModel, LineSpec

model.event = lambda *a, **k: None
state = LifecycleModel()
state.backlog_then_lose(container='app', cut=None, delete_first=True, recreate=False, rotate=True, specs=[LineSpec(stream='stdout', text='é日本', repeat=30, cuts=(), held=0)])
state.rotate(compress=False, container='sidecar', wait=True)
state.crash()
state.read()
state.backlog_then_lose(container='app', cut=3467, delete_first=False, recreate=True, rotate=True, specs=[LineSpec(stream='stdout', text='é日本', repeat=20, cuts=(), held=2)])
state.append(container='sidecar', cut=None, specs=[LineSpec(stream='stdout', text='é日本', repeat=36, cuts=(40,), held=2)])
state.append(container='sidecar', cut=180, specs=[LineSpec(
     stream='stdout',
     text='é日本',
     repeat=18,
     cuts=(2585, 247, 501),
     held=0,
 ),
 LineSpec(stream='stderr', text='naïve café', repeat=25, cuts=(676, 489, 3243), held=1),
 LineSpec(stream='stderr', text='é', repeat=14, cuts=(), held=1),
 LineSpec(stream='stdout', text='', repeat=22, cuts=(569,), held=2),
 LineSpec(stream='stdout', text='ascii text', repeat=16, cuts=(), held=2)])
state.crash()
state.append(container='sidecar', cut=522, specs=[LineSpec(stream='stdout', text='', repeat=35, cuts=(), held=1),
 LineSpec(stream='stdout', text='日本', repeat=10, cuts=(3930,), held=1),
 LineSpec(stream='stderr', text='é', repeat=25, cuts=(), held=0),
 LineSpec(stream='stderr', text='ascii text', repeat=9, cuts=(2081, 2074, 6801), held=2),
 LineSpec(stream='stdout', text='ascii text', repeat=20, cuts=(), held=0)])
state.tick()
state.spool_full(on=False)
state.append(container='app', cut=313, specs=[LineSpec(stream='stdout', text='naïve café', repeat=15, cuts=(141, 3593, 722), held=2)])
state.spool_full(on=True)
state.copytruncate(container='sidecar', wait=False)
state.restart()
state.copytruncate(container='app', wait=True)
state.backlog_then_lose(container='sidecar', cut=2974, delete_first=False, recreate=False, rotate=True, specs=[LineSpec(stream='stdout', text='ascii text', repeat=12, cuts=(563,), held=1),
 LineSpec(stream='stdout', text='', repeat=20, cuts=(842, 2678), held=0),
 LineSpec(stream='stdout', text='é日本', repeat=38, cuts=(1,), held=1)])
state.teardown()
print('MODEL PASSED')
