# ruff: noqa: E501 - the steps as the model printed them
"""Found by the lifecycle model (PODLOG_MODEL_EXPLORE=1) at b5a34b3, like r16: lost bytes counted short
(1,041 of 1,722), with copytruncates, rotations while down, two backlogs lost and the spool refusing.
Cause: the killed collector's checkpoint write, still on its thread, shared the temporary
file with the next collector's first write and made it fail, with the losses it carried (see README).

Run: PYTHONPATH=. .venv/bin/python tests/integration/collector/repros/r17_loss_counted_short_copytruncate.py [tries]
"""
from tests.integration.collector.repros.common import replay
from tests.integration.collector.test_lifecycle_model import LifecycleModel, LineSpec


def steps(model: LifecycleModel) -> None:
    model.rotate(compress=False, container='app', wait=True)
    model.backlog_then_lose(container='sidecar', cut=None, delete_first=False, recreate=False, rotate=False, specs=[LineSpec(stream='stdout', text='é日本', repeat=12, cuts=(688, 4209, 1306), held=1),
     LineSpec(stream='stdout', text='日本', repeat=15, cuts=(), held=0),
     LineSpec(stream='stdout', text='é日本', repeat=5, cuts=(), held=0),
     LineSpec(stream='stdout', text='日本', repeat=29, cuts=(), held=1),
     LineSpec(stream='stdout', text='é', repeat=39, cuts=(), held=0),
     LineSpec(stream='stdout', text='é日本', repeat=22, cuts=(), held=1)])
    model.read()
    model.spool_full(on=False)
    model.copytruncate(container='app', wait=True)
    model.delete(container='app', wait=True)
    model.copytruncate(container='app', wait=True)
    model.rotate_while_down(after=[LineSpec(stream='stdout', text='é日本', repeat=22, cuts=(), held=1),
     LineSpec(stream='stdout', text='é', repeat=15, cuts=(219, 1446, 364), held=2)], before=[LineSpec(stream='stdout', text='naïve café', repeat=29, cuts=(), held=1),
     LineSpec(stream='stderr', text='日本', repeat=8, cuts=(), held=0),
     LineSpec(stream='stdout', text='naïve café', repeat=17, cuts=(), held=1),
     LineSpec(stream='stdout', text='naïve café', repeat=27, cuts=(2521, 1513, 152), held=0)], container='sidecar', how='copytruncate')
    model.spool_full(on=True)
    model.spool_full(on=True)
    model.copytruncate(container='app', wait=True)
    model.copytruncate(container='app', wait=True)
    model.read()
    model.backlog_then_lose(container='sidecar', cut=7847, delete_first=False, recreate=True, rotate=True, specs=[LineSpec(stream='stdout', text='é日本', repeat=22, cuts=(), held=1),
     LineSpec(stream='stdout', text='é', repeat=15, cuts=(219, 1446, 364), held=2)])
    model.spool_full(on=True)
    model.rotate(compress=True, container='sidecar', wait=False)
    model.rotate_while_down(after=[LineSpec(stream='stderr', text='é', repeat=38, cuts=(96, 115, 288), held=2),
     LineSpec(stream='stdout', text='naïve café', repeat=26, cuts=(1921, 552), held=0),
     LineSpec(stream='stderr', text='naïve café', repeat=29, cuts=(), held=2),
     LineSpec(stream='stdout', text='é日本', repeat=11, cuts=(391, 0, 1), held=2)], before=[LineSpec(stream='stdout', text='naïve café', repeat=34, cuts=(48, 206, 420), held=2),
     LineSpec(stream='stderr', text='naïve café', repeat=16, cuts=(5022,), held=0),
     LineSpec(stream='stdout', text='日本', repeat=16, cuts=(882, 8244), held=2),
     LineSpec(stream='stderr', text='', repeat=27, cuts=(151, 3014, 696), held=1)], container='app', how='copytruncate')
    model.spool_full(on=True)
    model.spool_full(on=True)
    model.delete(container='sidecar', wait=True)
    model.teardown()


replay(steps)
