# ruff: noqa: E501 - the model's own printout, replayed as it is
"""Found by the lifecycle model (PODLOG_MODEL_EXPLORE=1): the sidecar's live file never sized.  Copytruncated,
its new head unknown, it was not opened after a restart until its first line would be whole, and its size
was never recorded: deleted with an unterminated line, its bytes would not have been counted.

Run: PYTHONPATH=. .venv/bin/python tests/integration/collector/repros/r14_live_file_never_sized.py
"""
import tests.integration.collector.test_lifecycle_model as model
from tests.integration.collector.test_lifecycle_model import LifecycleModel, LineSpec

model.event = lambda *a, **k: None
state = LifecycleModel()
state.crash()
state.rotate_while_down(after=[LineSpec(stream='stderr', text='', repeat=34, cuts=(7257, 904, 498), held=1),
 LineSpec(stream='stdout', text='naïve café', repeat=26, cuts=(1724,), held=1),
 LineSpec(stream='stderr', text='日本', repeat=9, cuts=(), held=2)], before=[], container='sidecar', how='rename+gzip')
state.tick()
state.copytruncate(container='sidecar', wait=True)
state.crash()
state.restart()
state.restart()
state.tick()
state.restart()
state.tick()
state.restart()
state.read()
state.copytruncate(container='app', wait=True)
state.rotate_while_down(after=[LineSpec(stream='stderr', text='ascii text', repeat=16, cuts=(), held=1)], before=[LineSpec(stream='stdout', text='é日本', repeat=26, cuts=(), held=1),
 LineSpec(stream='stderr', text='é', repeat=21, cuts=(), held=0)], container='app', how='copytruncate')
state.read()
state.tick()
state.backlog_then_lose(container='sidecar', cut=1135, delete_first=False, recreate=False, rotate=False, specs=[LineSpec(stream='stderr', text='é', repeat=23, cuts=(), held=2)])
state.teardown()
print('MODEL PASSED')
