"""Progress: one line per step off a terminal, bars on one, events through a file from a
notebook kernel, and never a report inside the timing instrument's clock."""
import io
import threading

from labkit import progress
from labkit.measure.compare import compare


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_plain_lines_one_per_step_with_what_is_left():
    out, clock = io.StringIO(), Clock()
    with progress.use(progress.PlainSink(stream=out, clock=clock)):
        for name in progress.steps(["phrase", "sentence", "paragraph", "article"], "texts"):
            clock.t += 10.0
    lines = out.getvalue().splitlines()
    assert lines == ["texts 1/4 phrase (10 s, ~30 s left)",
                     "texts 2/4 sentence (20 s, ~20 s left)",
                     "texts 3/4 paragraph (30 s, ~10 s left)",
                     "texts 4/4 article (40 s)"]


def test_nested_tasks_are_indented_and_say_goes_to_its_own_stream():
    out = io.StringIO()
    with progress.use(progress.PlainSink(stream=out)):
        with progress.task("candidates", total=2) as c:
            progress.say("stage 03: 2 candidates")
            with progress.task("rounds", total=1) as r:
                r.advance()
            c.advance("qdq")
    lines = out.getvalue().splitlines()
    assert lines[0] == "stage 03: 2 candidates"
    assert lines[1].startswith("  rounds 1/1")
    assert lines[2].startswith("candidates 1/2 qdq")


def test_bars_on_a_terminal_draw_counts():
    out = io.StringIO()
    with progress.use(progress.BarSink(stream=out)):
        for _ in progress.steps(range(3), "requests"):
            pass
    text = out.getvalue()
    assert "requests" in text and "3/3" in text


def test_a_kernel_reports_through_a_file_and_the_parent_draws_it(tmp_path, monkeypatch):
    path = tmp_path / "progress.jsonl"
    sink = progress.FileSink(path)
    with progress.use(sink):
        with progress.task("variants", total=2) as t:
            t.advance("fp16-dec")
            progress.say("building qdq")
            t.advance("qdq")
    out = io.StringIO()
    stop = threading.Event()
    stop.set()  # drain what is there and return
    progress.follow(path, progress.PlainSink(stream=out, prefix="[03] "), stop, depth_offset=1)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[03]   variants 1/2 fp16-dec")
    assert lines[1] == "[03]   building qdq"
    assert lines[2].startswith("[03]   variants 2/2 qdq")
    # the default sink in a kernel is the file named by the environment
    monkeypatch.setenv(progress.ENV, str(path))
    assert isinstance(progress.default_sink(), progress.FileSink)


class Recorder(progress.PlainSink):
    """Notes, at each step, whether the clock was running."""

    def __init__(self, running):
        super().__init__(stream=io.StringIO())
        self.running = running
        self.during = []

    def step(self, tid, n, total, desc):
        self.during.append(self.running[0])
        super().step(tid, n, total, desc)


def test_compare_reports_rounds_outside_its_clock():
    running = [False]
    t = [0.0]

    def clock():  # the instrument reads it just before and just after each call
        running[0] = not running[0]
        t[0] += 1.0
        return t[0]

    rec = Recorder(running)
    with progress.use(rec):
        cmp = compare({"a": lambda: None, "b": lambda: None}, "a", rounds=4, max_rounds=4,
                      warmup=0, clock=clock)
    assert cmp.rounds == 4
    assert rec.during == [False] * 4  # one step per round, none while a call was timed
