"""``StopSignals``: SIGTERM/SIGINT set the stop flag; the grace running out, or a second signal,
forces the exit (the run marked interrupted, exit 143). The signals go to the watcher thread
itself (``pthread_kill``), so no other thread of the test process can take them; ``os._exit``
is the one thing replaced, since it would end the test process."""

from __future__ import annotations

import logging
import signal
import threading

import pytest

from analyzer.errors import ExitCode, Interrupted
from analyzer.job import shutdown
from analyzer.job.shutdown import StopSignals
from tests.support import procs

WAIT = 5.0  # seconds a test waits for the watcher thread before failing


def blocked() -> set[int]:
    return set(signal.pthread_sigmask(signal.SIG_BLOCK, []))


def test_the_signals_are_taken_only_while_the_block_runs(watcher) -> None:
    assert not blocked() & {signal.SIGTERM, signal.SIGINT}
    with StopSignals() as signals:
        assert {signal.SIGTERM, signal.SIGINT} <= blocked()
        assert watcher().daemon  # never keeps the process alive
        signals.check()
    assert not blocked() & {signal.SIGTERM, signal.SIGINT}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_sets_stop_and_check_raises_interrupted(watcher, caplog, signum) -> None:
    before = set(threading.enumerate())
    with StopSignals(grace=60) as signals:
        signal.pthread_kill(watcher().ident, signum)
        assert signals.stop.wait(WAIT)
        [timer] = procs.wait_for(
            lambda: [t for t in threading.enumerate() if isinstance(t, threading.Timer) and t not in before],
            WAIT,
            "the grace timer",
        )
        assert timer.daemon  # the grace never keeps the process alive
        with pytest.raises(Interrupted, match="^stopped by signal; nothing written$") as caught:
            signals.check()
    assert caught.value.exit_code is ExitCode.INTERRUPTED
    [record] = [r for r in caplog.records if r.name == shutdown.__name__]
    assert record.levelno == logging.WARNING and record.action == "stop"
    assert record.getMessage() == f"received {signum.name}: stopping"


def test_the_default_grace_is_three_seconds() -> None:
    assert StopSignals().grace == shutdown.STOP_GRACE == 3.0


def test_the_grace_running_out_forces_the_exit(watcher, exits, caplog) -> None:
    forced = []
    with StopSignals(grace=0.01) as signals:
        signals.on_force = lambda: forced.append(signals.stop.is_set())
        signal.pthread_kill(watcher().ident, signal.SIGTERM)
        assert exits.called.wait(WAIT)
    assert forced == [True] and exits == [ExitCode.INTERRUPTED]
    records = [r for r in caplog.records if r.name == shutdown.__name__]
    assert [r.getMessage() for r in records] == ["received SIGTERM: stopping", "forced exit (did not stop in time)"]
    assert [(r.levelno, r.action) for r in records] == [(logging.WARNING, "stop")] * 2


def test_a_second_signal_forces_the_exit_at_once(watcher, exits, caplog) -> None:
    forced = threading.Event()
    with StopSignals(grace=60) as signals:
        signals.on_force = forced.set
        signal.pthread_kill(watcher().ident, signal.SIGTERM)
        assert signals.stop.wait(WAIT) and not forced.is_set()
        signal.pthread_kill(watcher().ident, signal.SIGTERM)
        assert exits.called.wait(WAIT)
    assert forced.is_set() and exits == [ExitCode.INTERRUPTED]
    messages = [r.getMessage() for r in caplog.records if r.name == shutdown.__name__]
    assert messages == ["received SIGTERM: stopping", "forced exit (second signal)"]


def test_the_default_forced_exit_only_exits(watcher, exits) -> None:
    before = set(threading.enumerate())
    with StopSignals(grace=0.01):
        signal.pthread_kill(watcher().ident, signal.SIGTERM)
        assert exits.called.wait(WAIT)
    for timer in set(threading.enumerate()) - before:  # the grace timer ends once the exit returns
        if isinstance(timer, threading.Timer):
            timer.join(WAIT)
    assert exits == [ExitCode.INTERRUPTED] and exits.errors == []  # on_force did nothing, and did not fail


def test_nothing_is_forced_once_the_run_has_ended(watcher, exits, caplog) -> None:
    with StopSignals(grace=60) as signals:
        signal.pthread_kill(watcher().ident, signal.SIGTERM)
        assert signals.stop.wait(WAIT)
    thread = watcher()
    signal.pthread_kill(thread.ident, signal.SIGTERM)
    thread.join(WAIT)
    assert not thread.is_alive() and exits == []
    assert "forced exit" not in caplog.text


def test_a_signal_after_the_run_does_not_stop_it(watcher) -> None:
    with StopSignals(grace=60) as signals:
        pass
    thread = watcher()
    signal.pthread_kill(thread.ident, signal.SIGTERM)
    thread.join(WAIT)
    assert not thread.is_alive() and not signals.stop.is_set()
