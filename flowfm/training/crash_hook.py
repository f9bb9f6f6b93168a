"""A test hook that parks the training loop at a chosen point, so a crash test can SIGKILL it there.

Not for normal use: it does nothing unless ``$FLOWFM_TEST_PAUSE`` is set. ``FLOWFM_TEST_PAUSE=POINT`` with

    step:K          before the optimisation step K (1-based, counted over the whole run, resumed runs included)
    checkpoint:E    inside the write of epoch E's checkpoint: model files written, train state not yet, the
                    folder still the hidden temp folder that :func:`flowfm.data.atomic.atomic_dir` builds

makes the loop create the file ``$FLOWFM_TEST_PAUSE_FILE`` (atomically, holding the pid; under torchrun every
rank R creates ``$FLOWFM_TEST_PAUSE_FILE.rankR``) and then sleep until it is killed (or, with the handlers of
:mod:`flowfm.training.interrupt` installed, until SIGINT / SIGTERM). The test waits for the
file(s) and kills the process(es): the kill lands at exactly that point however slow or loaded the machine is,
unlike a timed kill. (torchrun starts each rank in its own session, so killing the launcher's process group
does not reach the ranks: kill them by the pids in their files.)
"""
from __future__ import annotations

import os
import time


def pause_point(point: str) -> None:
    """Park here forever when ``$FLOWFM_TEST_PAUSE == point`` (see the module docstring)."""
    if os.environ.get("FLOWFM_TEST_PAUSE") != point:
        return
    flag = os.environ.get("FLOWFM_TEST_PAUSE_FILE")
    if flag:
        from flowfm.data.atomic import atomic_write_text

        rank = os.environ.get("RANK")
        atomic_write_text(flag if rank is None else f"{flag}.rank{rank}", str(os.getpid()))
    global _released
    _released = False
    while not _released:
        time.sleep(0.1)


_released = False


def release() -> None:
    """End a parked :func:`pause_point` (the SIGINT / SIGTERM handler of :mod:`flowfm.training.interrupt` calls
    it, so a signal sent to a parked run is handled as it would be mid-run)."""
    global _released
    _released = True
