# ruff: noqa: E501 - the model's own printout, replayed as it is
"""Found by the lifecycle model (PODLOG_MODEL_EXPLORE=1): three lines of app never delivered.  The file was
held at an open stdout fragment while stderr went on, then copytruncated; the next generation kept the
per-stream resume offsets of the old one and skipped its first stdout lines as emitted already.

Run: PYTHONPATH=. .venv/bin/python tests/integration/collector/repros/r13_lines_never_delivered_after_copytruncate_while_down.py
"""
import tests.integration.collector.test_lifecycle_model as model
from tests.integration.collector.test_lifecycle_model import LifecycleModel, LineSpec

model.event = lambda *a, **k: None
state = LifecycleModel()
state.rotate(compress=False, container='sidecar', wait=True)
state.rotate(compress=True, container='sidecar', wait=False)
state.read()
state.restart()
state.rotate(compress=True, container='sidecar', wait=False)
state.rotate_while_down(after=[LineSpec(stream='stderr', text='ascii text', repeat=11, cuts=(), held=0),
 LineSpec(stream='stdout', text='é日本', repeat=7, cuts=(69, 476, 161), held=0),
 LineSpec(
     stream='stdout',
     text='é日本',
     repeat=34,
     cuts=(557, 646, 661),
     held=2),
 LineSpec(stream='stdout', text='', repeat=13, cuts=(1048, 175, 713), held=2)], before=[LineSpec(stream='stderr', text='', repeat=20, cuts=(), held=2),
 LineSpec(stream='stdout', text='', repeat=26, cuts=(6324, 654, 195), held=2),
 LineSpec(stream='stdout', text='naïve café', repeat=40, cuts=(), held=2),
 LineSpec(stream='stdout', text='é', repeat=5, cuts=(1627, 306, 528), held=0)], container='app', how='rename+gzip')
state.read()
state.append(container='sidecar', cut=8763, specs=[LineSpec(stream='stdout', text='naïve café', repeat=10, cuts=(), held=2)])
state.delete(container='sidecar', wait=True)
state.rotate_while_down(after=[], before=[], container='sidecar', how='copytruncate')
state.read()
state.copytruncate(container='app', wait=True)
state.append(container='sidecar', cut=None, specs=[LineSpec(stream='stderr', text='', repeat=30, cuts=(148, 2731), held=1),
 LineSpec(stream='stdout', text='ascii text', repeat=16, cuts=(772, 7687), held=1),
 LineSpec(stream='stdout', text='', repeat=33, cuts=(), held=2),
 LineSpec(stream='stdout', text='', repeat=13, cuts=(), held=1)])
state.spool_full(on=False)
state.append(container='sidecar', cut=None, specs=[LineSpec(stream='stdout', text='naïve café', repeat=4, cuts=(), held=1),
 LineSpec(stream='stdout', text='é日本', repeat=22, cuts=(), held=1)])
state.read()
state.rotate_while_down(after=[LineSpec(stream='stdout', text='日本', repeat=37, cuts=(), held=2)], before=[LineSpec(stream='stdout', text='ascii text', repeat=12, cuts=(6049, 1095), held=0),
 LineSpec(stream='stderr', text='naïve café', repeat=33, cuts=(), held=1),
 LineSpec(
     stream='stdout',
     text='é日本',
     repeat=31,
     cuts=(478, 3855, 165),
     held=0,
 )], container='sidecar', how='copytruncate')
state.rotate(compress=False, container='sidecar', wait=False)
state.spool_full(on=True)
state.append(container='app', cut=1, specs=[LineSpec(stream='stdout', text='ascii text', repeat=27, cuts=(4275, 790, 107), held=2),
 LineSpec(
     stream='stdout',
     text='ascii text',
     repeat=6,
     cuts=(6373, 68),
     held=2,
 ),
 LineSpec(stream='stdout', text='', repeat=5, cuts=(), held=2)])
state.teardown()
print('MODEL PASSED')
