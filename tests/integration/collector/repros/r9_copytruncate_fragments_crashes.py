"""Fixed, found by the lifecycle model: a copytruncate while one stream holds an open fragment, with
the spool refusing and SIGKILLs around rotations, shipped the second half of a stderr line on its
own (a record that is no written line): the copy's checkpoint entry did not say where each stream
resumes, so a restart before the copy's first acknowledgement read the other stream again.

Run: PYTHONPATH=. .venv/bin/python tests/integration/collector/repros/r9_copytruncate_fragments_crashes.py
It ended in the model's AssertionError while the bug was there.
"""
import tests.integration.collector.test_lifecycle_model as model
from tests.integration.collector.test_lifecycle_model import LifecycleModel, LineSpec

model.event = lambda *args, **kwargs: None  # hypothesis' event() needs a running test
state = LifecycleModel()
state.spool_full(on=True)
state.crash()
state.crash()
state.spool_full(on=True)
state.append(container='sidecar', cut=2327, specs=[LineSpec(stream='stdout', text='naïve café', repeat=10, cuts=(),
 held=2),
 LineSpec(stream='stderr', text='ascii text', repeat=14, cuts=(), held=0),
 LineSpec(
     stream='stdout',
     text='日本',
     repeat=19,
     cuts=(9770, 5851, 926),
     held=1,
 ),
 LineSpec(
     stream='stderr',
     text='é日本',
     repeat=4,
     cuts=(18, 1853, 3271),
     held=1),
 LineSpec(
     stream='stdout',
     text='日本',
     repeat=22,
     cuts=(1617, 440, 664),
     held=2),
 LineSpec(stream='stderr', text='', repeat=24, cuts=(155, 27, 114), held=0)])
state.rotate(compress=True, container='app', wait=False)
state.spool_full(on=False)
state.crash()
state.append(container='sidecar', cut=None, specs=[LineSpec(stream='stderr', text='', repeat=14, cuts=(), held=0)])
state.copytruncate(container='sidecar', wait=True)
state.spool_full(on=False)
state.tick()
state.copytruncate(container='app', wait=True)
state.spool_full(on=True)
state.rotate(compress=True, container='sidecar', wait=True)
state.append(container='sidecar', cut=None, specs=[LineSpec(stream='stderr', text='ascii text', repeat=21, cuts=(192,
 7752), held=0)])
state.rotate_while_down(after=[LineSpec(stream='stdout', text='é日本', repeat=31, cuts=(2204, 907, 2951), held=2),
 LineSpec(stream='stderr', text='é日本', repeat=22, cuts=(336,), held=1),
 LineSpec(stream='stdout', text='é日本', repeat=32, cuts=(), held=0),
 LineSpec(stream='stdout', text='naïve café', repeat=12, cuts=(8732,), held=2)], before=[], container='sidecar',
 how='rename+gzip')
state.tick()
state.append(container='app', cut=None, specs=[LineSpec(stream='stdout', text='日本', repeat=17, cuts=(9362,), held=0),
 LineSpec(stream='stdout', text='ascii text', repeat=33, cuts=(), held=1),
 LineSpec(stream='stderr', text='', repeat=13, cuts=(3410, 1124, 494), held=1),
 LineSpec(stream='stderr', text='日本', repeat=0, cuts=(96, 2798), held=1),
 LineSpec(stream='stdout', text='naïve café', repeat=6, cuts=(), held=2)])
state.crash()
state.teardown()
