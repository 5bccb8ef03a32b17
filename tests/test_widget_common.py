"""The shared widget parts: the worker runner, the training panel and the curve plot."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from qtpy.QtWidgets import QWidget

from napari_distill._widgets.common import workers
from napari_distill._widgets.common.plot import CurvePlot
from napari_distill._widgets.common.training_panel import TrainingPanel, format_duration
from napari_distill._widgets.common.training_session import ending_text, starting_text
from napari_distill._widgets.common.workers import WorkerRunner
from napari_distill.core.training import TrainStep


@pytest.fixture
def errors(monkeypatch):
    shown: list[str] = []
    monkeypatch.setattr(workers, "show_error", shown.append)
    return shown


def counting(n: int, delay: float = 0.0, state: dict | None = None):
    try:
        for i in range(n):
            time.sleep(delay)
            yield i
        return "done"
    finally:
        if state is not None:
            state["closed_in"] = threading.current_thread()


class Recorder:
    def __init__(self):
        self.yielded, self.returned, self.outcomes, self.aborted = [], [], [], 0

    def kwargs(self):
        return {
            "on_yield": self.yielded.append,
            "on_return": self.returned.append,
            "on_abort": self.abort,
            "on_finish": self.outcomes.append,
        }

    def abort(self):
        self.aborted += 1


def run_and_wait(qtbot, runner, *args, **kwargs):
    worker = runner.start(*args, **kwargs)
    qtbot.waitUntil(lambda: not runner.is_running, timeout=10_000)
    return worker


def test_runner_returns_the_result_and_reports_progress(qtbot):
    widget = QWidget()
    qtbot.addWidget(widget)
    runner = WorkerRunner(widget)
    record = Recorder()
    run_and_wait(qtbot, runner, counting, 5, progress=lambda i: (i + 1, 5), **record.kwargs())
    assert record.yielded == [0, 1, 2, 3, 4]
    assert record.returned == ["done"]
    assert record.outcomes == ["returned"]


@pytest.mark.parametrize("with_progress", [True, False])
def test_only_tasks_with_a_progress_function_get_napari_s_activity_bar(qtbot, with_progress):
    # training shows its own bar; napari's would animate a status-bar indicator all along
    from napari.utils import progress

    widget = QWidget()
    qtbot.addWidget(widget)
    runner = WorkerRunner(widget)
    seen = []
    kwargs = {"progress": lambda i: (i + 1, 3)} if with_progress else {}
    run_and_wait(
        qtbot,
        runner,
        counting,
        3,
        0.01,
        on_yield=lambda _: seen.append(len(progress._all_instances)),
        **kwargs,
    )
    assert seen and all(count == (1 if with_progress else 0) for count in seen)
    assert len(progress._all_instances) == 0  # closed when done


@pytest.mark.parametrize("error", [ValueError("paint two classes"), RuntimeError("out of memory")])
def test_runner_shows_errors_and_becomes_usable_again(qtbot, errors, error):
    def failing():
        yield 1
        raise error

    widget = QWidget()
    qtbot.addWidget(widget)
    runner = WorkerRunner(widget)
    record = Recorder()
    run_and_wait(qtbot, runner, failing, error_message="Training failed", **record.kwargs())
    assert record.outcomes == ["errored"]
    assert errors == [f"Training failed: {error}"]
    # a RuntimeError from torch must reach the user too (superqt would swallow it)
    run_and_wait(qtbot, runner, counting, 2, **record.kwargs())
    assert record.outcomes == ["errored", "returned"]


def test_stop_takes_effect_at_the_next_yield(qtbot):
    widget = QWidget()
    qtbot.addWidget(widget)
    runner = WorkerRunner(widget)
    record = Recorder()
    state: dict = {}
    worker = runner.start(counting, 10_000, 0.01, state, **record.kwargs())
    qtbot.waitUntil(lambda: len(record.yielded) >= 3, timeout=10_000)
    with qtbot.waitSignal(worker.finished, timeout=10_000):
        runner.stop()
    qtbot.waitUntil(lambda: record.outcomes == ["aborted"], timeout=5_000)
    assert record.aborted == 1 and record.returned == []
    assert state["closed_in"] is not threading.main_thread()  # generator closed in its thread


def test_closing_the_widget_stops_and_waits(qtbot):
    widget = QWidget()
    qtbot.addWidget(widget)
    runner = WorkerRunner(widget)
    record = Recorder()
    state: dict = {}
    worker = runner.start(counting, 10_000, 0.01, state, **record.kwargs())
    qtbot.waitUntil(lambda: len(record.yielded) >= 2, timeout=10_000)
    widget.close()
    assert worker.done.is_set() and not runner.is_running
    assert "closed_in" in state
    seen = len(record.yielded)
    qtbot.wait(50)
    assert len(record.yielded) == seen and record.outcomes == []  # nothing after the close


def test_closing_the_viewer_stops_the_worker(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = QWidget()
    viewer.window.add_dock_widget(widget)
    runner = WorkerRunner(widget)
    record = Recorder()
    worker = runner.start(counting, 10_000, 0.01, **record.kwargs())
    qtbot.waitUntil(lambda: len(record.yielded) >= 2, timeout=10_000)
    viewer.close()
    assert worker.done.is_set() and not runner.is_running


def test_removing_the_dock_widget_stops_the_worker(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = QWidget()
    viewer.window.add_dock_widget(widget)
    runner = WorkerRunner(widget)
    worker = runner.start(counting, 10_000, 0.01)
    qtbot.waitUntil(lambda: worker.began.is_set(), timeout=10_000)
    viewer.window.remove_dock_widget(widget)
    assert worker.done.is_set() and not runner.is_running


def step(i: int, total: int = 10, val: float | None = None) -> TrainStep:
    return TrainStep(i, total, 1.0 / i, 1e-3, 0.5 * i, 0.5 * (total - i), val, val)


def test_training_panel_follows_the_records(qtbot):
    panel = TrainingPanel(train_text="Train teacher")
    qtbot.addWidget(panel)
    clicks = []
    panel.train_clicked.connect(lambda: clicks.append("train"))
    panel.stop_clicked.connect(lambda: clicks.append("stop"))
    assert panel.progress_bar.text() == "not started"
    panel.train_button.click()
    panel.start()
    assert not panel.train_button.isEnabled() and panel.stop_button.isEnabled()
    for i in range(1, 6):
        panel.show_step(step(i, val=0.5 if i == 5 else None))
    # bars and labels follow at most UPDATES_PER_S times a second
    qtbot.waitUntil(lambda: panel.progress_bar.value() == 5, timeout=2_000)
    assert panel.progress_bar.maximum() == 10 and panel.progress_bar.text() == "step 5 / 10"
    assert panel.plot.x == [1, 2, 3, 4, 5] and panel.plot.y2 == [0.5]
    assert "remaining 0:02" in panel.time_label.text()
    panel.stop_button.click()
    assert clicks == ["train", "stop"] and not panel.stop_button.isEnabled()
    panel.finish("Stopped.")
    assert panel.train_button.isEnabled() and panel.status_label.text() == "Stopped."


def test_a_run_stopped_before_its_first_step_says_so(qtbot):
    panel = TrainingPanel(train_text="Train teacher")
    qtbot.addWidget(panel)
    panel.start()
    panel.finish("Stopped.")
    assert panel.progress_bar.text() == "no step run" and panel.train_button.isEnabled()


def test_curve_plot_throttles_redraws(qtbot):
    plot = CurvePlot(max_redraws_per_s=5)
    qtbot.addWidget(plot)
    plot.show()
    qtbot.waitExposed(plot)
    before = plot.redraws
    start = time.perf_counter()
    for i in range(40):
        plot.append(i + 1, y=float(np.random.rand()))
        qtbot.wait(10)
    elapsed = time.perf_counter() - start
    assert len(plot.x) == 40
    assert 1 <= plot.redraws - before <= elapsed * 5 + 1  # at most 5 per second
    plot.append(1, y=float("nan"))  # a diverged step is not drawn
    assert len(plot.x) == len(plot.y)


def test_curve_plot_says_what_will_appear_until_the_first_point(qtbot):
    panel = TrainingPanel(train_text="Train teacher", score_label="validation Dice")
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitExposed(panel)
    plot = panel.plot
    hint = plot.view.hint
    # before training: one line of text, not empty axes from -0.04 to 0.04
    assert hint.isVisible() and not plot.canvas.isVisible()
    assert hint.text() == "The loss and the validation Dice appear here once training starts."
    panel.start()
    assert hint.isVisible() and not plot.canvas.isVisible()  # preparing the data: no step yet
    panel.show_step(step(1))
    assert plot.canvas.isVisible() and not hint.isVisible()
    panel.finish("Done.")
    assert plot.canvas.isVisible()
    panel.start()  # a new run starts with a clean plot: the hint again
    assert hint.isVisible() and not plot.canvas.isVisible()
    assert (
        CurvePlot(y2_label=None).view.hint.text() == "The loss appears here once training starts."
    )


def test_a_falling_loss_is_blitted_without_redrawing_the_axes(qtbot):
    plot = CurvePlot(max_redraws_per_s=None)
    qtbot.addWidget(plot)
    plot.show()
    qtbot.waitExposed(plot)
    plot.set_x_range(100)
    plot.append(1, y=2.0)
    plot.redraw()
    qtbot.waitUntil(lambda: plot._background is not None, timeout=2_000)
    fitted = plot.full_draws
    for i in range(2, 101):  # a loss that falls (and wobbles below its first value)
        plot.append(i, y=2.0 * np.exp(-i / 30) + 0.1 * (i % 3), y2=0.5 if i % 25 == 0 else None)
        plot.redraw()
    qtbot.wait(50)
    assert plot.full_draws == fitted  # only the curves were drawn again
    low, high = plot.axes.get_ylim()
    assert low == 0 and high >= max(plot.y)
    plot.clear()  # a new run keeps the axes: no full draw to erase the curves either
    qtbot.wait(50)
    assert plot.x == [] and plot.full_draws == fitted


def test_axes_drawn_in_the_background_look_as_drawn_on_the_gui_thread(qtbot):
    plot = CurvePlot(max_redraws_per_s=None)
    qtbot.addWidget(plot)
    plot.resize(380, 200)
    plot.show()
    qtbot.waitExposed(plot)
    plot.append(0, y=3.0)  # the first point shows the canvas in the hint's place
    plot.redraw()
    qtbot.waitUntil(lambda: plot._background is not None, timeout=2_000)  # drawn when shown
    drawn = plot.full_draws
    plot.set_x_range(150)  # new axes: drawn by a background thread
    for i in range(1, 40):
        plot.append(i, y=3.0 / i, y2=0.1 * (i // 10) if i % 10 == 0 else None)
    plot.redraw()
    qtbot.waitUntil(lambda: plot.full_draws == drawn + 1, timeout=5_000)
    in_background = np.asarray(plot.canvas.renderer.buffer_rgba()).copy()
    plot.canvas.draw()  # the same figure drawn here, curves and all
    on_gui_thread = np.asarray(plot.canvas.renderer.buffer_rgba())
    np.testing.assert_array_equal(in_background, on_gui_thread)


def test_showing_and_resizing_the_canvas_draw_its_axes_off_the_gui_thread(qtbot):
    # matplotlib draws a shown or resized canvas on the GUI thread (150-230 ms with many
    # volumes open, at a run's first step); here a background frame stands in for it
    panel = TrainingPanel(train_text="Train teacher")
    qtbot.addWidget(panel)
    panel.resize(360, 500)
    panel.show()
    qtbot.waitExposed(panel)
    plot = panel.plot
    gui_draws = []
    plot.canvas.draw = lambda: gui_draws.append(threading.current_thread().name)
    panel.show_step(step(1))  # the first point shows the canvas, at its size
    qtbot.waitUntil(lambda: plot._background is not None, timeout=5_000)
    shown = plot.full_draws
    panel.resize(420, 500)
    qtbot.waitUntil(lambda: plot.full_draws > shown and plot._background is not None, timeout=5_000)
    assert gui_draws == []
    resized = np.asarray(plot.canvas.renderer.buffer_rgba()).copy()
    width, height = (int(n) for n in plot.figure.bbox.size)
    assert resized.shape[:2] == (height, width) == (plot.canvas.height(), plot.canvas.width())
    del plot.canvas.draw  # the same figure drawn here, curves and all, looks the same
    plot.canvas.draw()
    np.testing.assert_array_equal(resized, np.asarray(plot.canvas.renderer.buffer_rgba()))


def test_the_curve_keeps_its_height_when_the_status_wraps(qtbot):
    panel = TrainingPanel(train_text="Train teacher")
    qtbot.addWidget(panel)
    panel.resize(300, 500)
    panel.show()
    qtbot.waitExposed(panel)
    height = panel.plot.height()
    panel.set_status("A status line long enough to wrap over several lines of the dock. " * 4)
    qtbot.wait(50)
    assert panel.plot.height() == height


def test_format_duration():
    assert format_duration(None) == "--"
    assert format_duration(62) == "1:02"
    assert format_duration(3723) == "1:02:03"


def test_starting_text_says_when_the_run_cannot_stop_early():
    run = SimpleNamespace(
        total_steps=2000, device="cpu", step=0, validator=object(), early_stopping=False
    )
    assert starting_text(run) == (
        "Training 2000 steps on cpu from step 0. Too few validation slices to stop early on: "
        "it runs to the end."
    )
    run.early_stopping = True
    assert starting_text(run) == "Training 2000 steps on cpu from step 0."


def test_ending_text_says_why_and_which_weights_are_kept():
    run = SimpleNamespace(
        step=200, total_steps=934, stop_reason="early_stopping", best_step=0, best_score=0.7251
    )
    assert ending_text("returned", run) == (
        "Training finished at step 200 of 934 (validation stopped improving); keeping the "
        "starting weights (validation Dice 0.725)."
    )
    stopped = SimpleNamespace(
        step=40, total_steps=100, stop_reason=None, best_step=25, best_score=0.5
    )
    assert "(Resume continues); keeping step 25" in ending_text("aborted", stopped)
    assert ending_text("errored", run) == "Training failed."
