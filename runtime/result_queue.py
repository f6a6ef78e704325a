"""The bounded result queue both recognisers hand results through (one definition for one and N cameras).

Why bounded and lossy: a robot's consumer that falls behind must see the
newest decisions, not an ever-growing backlog, so a full queue drops its
oldest result (counted in ``results_dropped``). The end of recognition is a
sentinel every reader sees, and the inference thread's error is raised to
them rather than lost on its thread.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterator, Optional

from .sources import EndOfStream

STOP = object()  # the sentinel the inference thread puts last


class ResultQueue:
    """Mixin: ``next_result``, iteration and the lossy ``_put`` over ``self._queue``.

    The class using it sets ``_queue`` (a bounded :class:`queue.Queue`), ``_stop`` (a
    :class:`threading.Event`), ``_thread``, ``_finished``, ``_error`` and
    ``results_dropped``, and provides ``start()``.
    """

    _queue: queue.Queue
    _stop: threading.Event
    _thread: Optional[threading.Thread]
    _finished: bool
    _closed: bool
    _error: Optional[BaseException]
    results_dropped: int

    def start(self) -> Any:  # pragma: no cover - provided by the recogniser
        raise NotImplementedError

    def next_result(self, timeout: Optional[float] = None) -> Any:
        """The next result; None after ``timeout``; raises :class:`EndOfStream` when no more will come
        (and the inference thread's error, if it failed). Safe to call from several threads: each result goes
        to one of them, the end to all."""
        if self._thread is None:
            if self._closed:  # closed before it ran: nothing opens again, the end comes at once
                self._raise_end()
            self.start()
        if self._finished and self._queue.empty():
            self._raise_end()
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is STOP:
            self._finished = True
            try:
                self._queue.put_nowait(STOP)  # left for the other readers: each of them must see the end too
            except queue.Full:  # not expected (nothing follows the end); a reader polling sees _finished
                pass
            self._raise_end()
        return item

    def _raise_end(self) -> None:
        if self._error is not None:
            raise self._error
        raise EndOfStream("recognition ended")

    def __iter__(self) -> Iterator[Any]:
        while True:
            try:
                r = self.next_result(timeout=0.5)
            except EndOfStream:
                return
            if r is not None:
                yield r

    def _put(self, item: Any, force: bool = False) -> None:
        """Queue ``item``; when full, drop the oldest result (``force``: even while stopping, for the end)."""
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                if not force and self._stop.is_set():
                    return  # stopping: keep what the consumer has not read yet
                try:
                    self._queue.get_nowait()
                    self.results_dropped += 1
                except queue.Empty:
                    pass
