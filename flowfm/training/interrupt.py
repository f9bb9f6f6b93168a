"""SIGINT / SIGTERM during pretraining: finish the optimisation step, write a resumable checkpoint, stop.

:func:`stop_requests` installs handlers for SIGINT and SIGTERM for the duration of a ``with`` block (main thread,
single process; under ``torchrun`` the launcher's default handling stays, since ranks would have to agree on the
step) and yields a :class:`StopRequest` the training loop polls after every step. The loop then writes
``checkpoints/interrupted_eEEEE_sSSSSS`` (the epoch in progress and the steps done in it, with the optimiser,
scheduler, EMA and generator state and the epoch's running loss) and raises :class:`TrainingInterrupted`, whose
message says how to resume; ``--resume`` continues from the next step and ends with the weights of an uninterrupted
run. A second signal while the step finishes acts at once (the default handler is back).
"""
from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass
from typing import Iterator, Optional

from flowfm.training import crash_hook

__all__ = ["StopRequest", "TrainingInterrupted", "stop_requests"]


class TrainingInterrupted(RuntimeError):
    """Pretraining stopped on a signal after writing a resumable checkpoint; ``signum`` the signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


@dataclass
class StopRequest:
    """``signum`` of the first SIGINT / SIGTERM received, or None."""

    signum: Optional[int] = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


@contextlib.contextmanager
def stop_requests(enabled: bool = True) -> Iterator[StopRequest]:
    request = StopRequest()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handle(signum, frame):
        request.signum = signum
        for s, handler in previous.items():  # a second signal is not deferred
            signal.signal(s, handler)
        crash_hook.release()

    for s in previous:
        signal.signal(s, handle)
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
