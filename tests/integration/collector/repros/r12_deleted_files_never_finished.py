# ruff: noqa: E501 - the model's own printout, replayed as it is
"""Found by the lifecycle model (PODLOG_MODEL_EXPLORE=1): deleted files never finished.  The sidecar's file
was copytruncated and then deleted, both seen in one pass; found truncated, the deleted file went back
to ACTIVE after its copy was read, so nothing ever ended it.

Run: PYTHONPATH=. .venv/bin/python tests/integration/collector/repros/r12_deleted_files_never_finished.py
"""
import tests.integration.collector.test_lifecycle_model as model
from tests.integration.collector.test_lifecycle_model import LifecycleModel, LineSpec

model.event = lambda *a, **k: None
state = LifecycleModel()
state.spool_full(on=True)
state.append(container='sidecar', cut=598, specs=[LineSpec(stream='stdout', text='ascii text', repeat=36, cuts=(4096, 1012, 43), held=0)])
state.delete(container='sidecar', wait=True)
state.rotate(compress=False, container='app', wait=False)
state.delete(container='sidecar', wait=True)
state.spool_full(on=True)
state.copytruncate(container='app', wait=True)
state.spool_full(on=True)
state.copytruncate(container='sidecar', wait=False)
state.append(container='app', cut=None, specs=[LineSpec(stream='stderr', text='naïve café', repeat=14, cuts=(108, 5143, 180), held=2),
 LineSpec(stream='stderr', text='日本', repeat=36, cuts=(), held=2)])
state.append(container='sidecar', cut=None, specs=[LineSpec(stream='stdout', text='日本', repeat=40, cuts=(), held=1),
 LineSpec(stream='stdout', text='naïve café', repeat=39, cuts=(), held=0),
 LineSpec(stream='stderr', text='naïve café', repeat=8, cuts=(371, 793, 235), held=2),
 LineSpec(stream='stdout', text='ascii text', repeat=34, cuts=(0, 115, 62), held=2),
 LineSpec(stream='stdout', text='', repeat=25, cuts=(445, 2586), held=1)])
state.copytruncate(container='sidecar', wait=True)
state.spool_full(on=True)
state.rotate(compress=False, container='app', wait=False)
state.copytruncate(container='app', wait=True)
state.spool_full(on=True)
state.delete(container='sidecar', wait=True)
state.append(container='app', cut=1749, specs=[LineSpec(
     stream='stdout',
     text='é',
     repeat=24,
     cuts=(1295, 415, 9317),
     held=2),
 LineSpec(stream='stdout', text='', repeat=40, cuts=(), held=2),
 LineSpec(
     stream='stdout',
     text='日本',
     repeat=33,
     cuts=(242, 1641, 2133),
     held=1,
 ),
 LineSpec(stream='stdout', text='', repeat=29, cuts=(), held=0),
 LineSpec(stream='stdout', text='ascii text', repeat=1, cuts=(), held=1),
 LineSpec(stream='stderr', text='ascii text', repeat=27, cuts=(3379, 203, 5641), held=1)])
state.restart()
state.teardown()
print('MODEL PASSED')
