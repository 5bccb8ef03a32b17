"""Run a core generator in a napari thread worker, and never leave a thread behind.

The core's long computations are generators that yield small progress records and return a
result (``TrainingRun.steps()``, ``predict_bundle(...)``). :class:`WorkerRunner` runs one at a
time for a widget in a ``GeneratorWorker`` (napari's ``thread_worker`` machinery) and calls the
widget back on the GUI thread:

``on_yield(record)``
    for every yielded record;
``on_return(result)``
    with the generator's return value (not called when stopped);
``on_error(exception)``
    after the error was logged and shown as a napari notification (``error_message: ...``);
``on_abort()``
    when :meth:`WorkerRunner.stop` took effect (at the generator's next yield);
``on_finish(outcome)``
    always, last, with ``"returned"``, ``"aborted"`` or ``"errored"``: re-enable buttons here.

With ``progress(record) -> (done, total) | None``, a progress bar in napari's activity dock
follows the task. Tasks shown in a widget's own progress bar (training) go without: while any
such bar exists napari animates an "in progress" indicator in its status bar, and in a window
holding napari's OpenGL canvas each of its frames composes the whole window on the GUI thread
(with software OpenGL, as under Xvfb or on a remote desktop, most of the GUI thread's time).

The runner stops its worker and waits for it (so no thread outlives the window, no callback
reaches a deleted widget, and no file is left half-written) when the widget is closed or taken
out of its dock, and when the viewer's window closes or the application quits.

Example
-------
>>> runner = WorkerRunner(widget, "Training the teacher")            # doctest: +SKIP
>>> runner.start(run.steps, on_yield=panel.show_step,               # doctest: +SKIP
...              on_finish=lambda outcome: panel.finish(outcome),
...              progress=lambda r: (r.step, r.total_steps),
...              error_message="Training failed")
>>> runner.stop()      # the Stop button                             # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Generator
from typing import Any

from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QWidget
from superqt.utils import GeneratorWorker, create_worker

from napari_distill.core.allocator import retained_freed_memory

logger = logging.getLogger(__name__)

# How long closing a window waits for the current step to finish before giving up.
DEFAULT_WAIT_S = 60.0
# Shortest time between two updates of the progress bar in napari's activity dock.
PROGRESS_INTERVAL_S = 0.25


class TaskError(Exception):
    """A ``RuntimeError`` raised by the core, re-raised under another type.

    superqt's worker treats any ``RuntimeError`` as "the worker was deleted" and silently drops
    it (no ``errored``, no ``finished``); torch reports most failures (out of memory, shape
    mismatches) as ``RuntimeError``, and the user must see them.
    """


def _guarded(
    function: Callable[..., Generator[Any, Any, Any]], args: tuple, kwargs: dict
) -> Generator[Any, Any, Any]:
    # While a task runs, freed tensors' memory is kept for reuse (see core.allocator): the
    # CPU's forward and backward passes skip most of their page faults.
    try:
        with retained_freed_memory():
            return (yield from function(*args, **kwargs))
    except RuntimeError as error:
        raise TaskError(str(error)) from error


class TrackedWorker(GeneratorWorker):
    """A ``GeneratorWorker`` that closes its generator in its own thread and says when done."""

    def __init__(self, func: Callable[..., Generator], *args: Any, **kwargs: Any) -> None:
        super().__init__(func, *args, **kwargs)
        self.began = threading.Event()
        self.done = threading.Event()

    def work(self) -> Any:
        try:
            return super().work()
        finally:
            # after a stop the generator is suspended at a yield: close it here so its
            # ``finally`` blocks run in this thread, not whenever it is garbage-collected
            self._gen.close()

    def run(self) -> None:
        self.began.set()
        try:
            super().run()
        finally:
            self.done.set()


class _Relay(QObject):
    """Receives one worker's signals on the GUI thread; muted once the runner detaches it."""

    def __init__(self, runner: WorkerRunner, callbacks: dict[str, Callable | None]) -> None:
        super().__init__(runner)
        self.runner = runner
        self.callbacks = callbacks
        self.active = True
        self.outcome: str | None = None

    def _call(self, name: str, *args: Any) -> None:
        callback = self.callbacks.get(name)
        if callback is not None:
            callback(*args)

    def on_yielded(self, record: Any) -> None:
        if self.active:
            self._call("on_yield", record)
            self.runner._advance(record)  # last: napari's bar runs processEvents (re-entry)

    def on_returned(self, result: Any) -> None:
        if self.active:
            self.outcome = "returned"
            self._call("on_return", result)

    def on_errored(self, error: Exception) -> None:
        if self.active:
            self.outcome = "errored"
            message = self.callbacks["error_message"]
            logger.error("%s", message, exc_info=(type(error), error, error.__traceback__))
            show_error(f"{message}: {error}")
            self._call("on_error", error)

    def on_aborted(self) -> None:
        if self.active:
            self.outcome = "aborted"
            self._call("on_abort")

    def on_warned(self, warning: tuple) -> None:
        if self.active:
            show_warning(str(warning[0]))

    def on_finished(self) -> None:
        if not self.active:
            return
        self.active = False
        outcome = self.outcome or "aborted"  # stopped just as it ended: neither signal came
        self.runner._finished(self)
        self._call("on_finish", outcome)
        self.deleteLater()


class WorkerRunner(QObject):
    """Runs one core generator at a time for ``widget`` and stops it when the widget goes.

    Parameters
    ----------
    widget:
        The dock widget that owns the work; the runner becomes its child and watches its
        close, its removal from the dock and its window's close.
    description:
        Default label of the progress bar in napari's activity dock.
    """

    def __init__(self, widget: QWidget, description: str = "napari-distill") -> None:
        # The widget is reached as self.parent() and the window through a weak reference: a
        # Python reference cycle through the widget would keep the viewer alive after close.
        super().__init__(widget)
        self._description = description
        self._worker: TrackedWorker | None = None
        self._relay: _Relay | None = None
        self._progress: Callable[[Any], tuple[int, int] | None] | None = None
        self._pbar: napari_progress | None = None
        self._watched_window: Callable[[], QWidget | None] = lambda: None
        self._advancing = False
        self._last_advance = 0.0
        widget.installEventFilter(self)

    # ------------------------------------------------------------------ public
    @property
    def is_running(self) -> bool:
        """Whether a worker was started and has not finished yet."""
        return self._worker is not None

    @property
    def worker(self) -> TrackedWorker | None:
        """The running worker (its signals can be waited on in tests), or None."""
        return self._worker

    def start(
        self,
        function: Callable[..., Generator[Any, Any, Any]],
        *args: Any,
        on_yield: Callable[[Any], None] | None = None,
        on_return: Callable[[Any], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        on_abort: Callable[[], None] | None = None,
        on_finish: Callable[[str], None] | None = None,
        progress: Callable[[Any], tuple[int, int] | None] | None = None,
        description: str | None = None,
        error_message: str = "The computation failed",
        **kwargs: Any,
    ) -> TrackedWorker:
        """Run ``function(*args, **kwargs)`` (a generator function) in a worker thread.

        Raises
        ------
        RuntimeError
            If a worker of this runner is still running (disable the buttons while running).
        """
        if self._worker is not None:
            raise RuntimeError("a computation is already running: stop it first")
        relay = _Relay(
            self,
            {
                "on_yield": on_yield,
                "on_return": on_return,
                "on_error": on_error,
                "on_abort": on_abort,
                "on_finish": on_finish,
                "error_message": error_message,
            },
        )
        worker = create_worker(
            _guarded,
            function,
            args,
            kwargs,
            _worker_class=TrackedWorker,
            _start_thread=False,
            _ignore_errors=True,  # errors are shown by the relay, not re-raised in Qt's loop
        )
        worker.yielded.connect(relay.on_yielded)
        worker.returned.connect(relay.on_returned)
        worker.errored.connect(relay.on_errored)
        worker.aborted.connect(relay.on_aborted)
        worker.warned.connect(relay.on_warned)
        worker.finished.connect(relay.on_finished)
        self._worker, self._relay, self._progress = worker, relay, progress
        if progress is not None:
            self._pbar = napari_progress(total=0, desc=description or self._description)
        self._watch_window()
        worker.start()
        return worker

    def stop(self) -> None:
        """Ask the worker to stop at its next yield; ``on_abort`` and ``on_finish`` follow."""
        if self._worker is not None:
            self._worker.quit()

    def stop_and_wait(self, timeout_s: float = DEFAULT_WAIT_S) -> bool:
        """Stop the worker and block until its thread has left the generator.

        Used when the widget or the window goes away: no callback runs afterwards. Returns
        False if the worker did not finish within ``timeout_s`` (it is then left to end on its
        own at its next yield).
        """
        worker, relay = self._worker, self._relay
        if worker is None:
            return True
        logger.info("stopping the running worker and waiting for it (its widget goes away)")
        if relay is not None:
            relay.active = False
        worker.quit()
        # A worker whose start is still queued on the event loop will start, see the stop
        # request and end at once: waiting for it here would block the loop that starts it.
        finished = not worker.began.is_set() or worker.done.wait(timeout_s)
        if not finished:
            logger.warning("the worker did not stop within %.0f s", timeout_s)
        self._release()
        return finished

    # ------------------------------------------------------------------ internals
    def _advance(self, record: Any) -> None:
        # napari's activity-dock bar calls QApplication.processEvents() on every update, which
        # delivers the worker's next signals inside this call: update at most every
        # PROGRESS_INTERVAL_S and never re-entrantly, so the recursion stays one level deep.
        pbar, progress = self._pbar, self._progress
        if pbar is None or progress is None or self._advancing:
            return
        done_total = progress(record)
        if done_total is None:
            return
        done, total = done_total
        now = time.monotonic()
        if done < total and now - self._last_advance < PROGRESS_INTERVAL_S:
            return
        self._last_advance = now
        self._advancing = True
        try:
            if pbar.total != total:
                pbar.total = total
            if done != pbar.n:
                pbar.update(done - pbar.n)
        finally:
            self._advancing = False

    def _finished(self, relay: _Relay) -> None:
        if relay is self._relay:
            self._release()

    def _release(self) -> None:
        pbar = self._pbar
        self._worker = self._relay = self._pbar = self._progress = None
        if pbar is not None:
            pbar.close()  # may process events: the runner is already idle

    def _watch_window(self) -> None:
        widget = self.parent()
        window = widget.window()
        previous = self._watched_window()
        if window is widget or window is previous:
            return
        if previous is not None:
            previous.removeEventFilter(self)
        window.installEventFilter(self)
        self._watched_window = weakref.ref(window)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        widget = self.parent()
        if widget is None:  # Qt may still deliver events while the widget is torn down
            return False
        kind = event.type()
        if watched is widget:
            if kind == QEvent.Type.Close or (
                kind == QEvent.Type.ParentChange and widget.parent() is None
            ):
                self.stop_and_wait()  # closed, or taken out of the dock
            elif kind == QEvent.Type.Show:
                self._watch_window()
        elif (
            watched is self._watched_window()
            and not event.spontaneous()
            and kind in (QEvent.Type.Close, QEvent.Type.Hide)
        ):
            # A programmatic close (viewer.close()) sends Close; a user's close that napari
            # accepts hides the window. A close the user cancels does neither.
            self.stop_and_wait()
        return False
