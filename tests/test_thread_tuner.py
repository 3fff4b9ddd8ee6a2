"""`ThreadTuner`: torch's thread count for a CPU run, chosen by the run's own throughput.

A fake clock makes each batch's period depend on the thread count in force, so the tests know
which count is faster and check that the tuner keeps it, probes again later, and never lets
a switch's first batch decide."""

from __future__ import annotations

from collections.abc import Callable

from streamseg.video.thread_tuner import PROBE, ROUNDS, WARMUP, ThreadTuner, thread_candidates


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _drive(
    tuner: ThreadTuner,
    clock: _Clock,
    batches: int,
    seconds_per_frame: Callable[[int, int], float],
    frames: int = 4,
) -> list[int]:
    """Run `batches` batches; `seconds_per_frame(count, batch number)` is each one's period."""
    used = []
    for number in range(batches):
        count = tuner.before_batch(frames)
        used.append(count)
        clock.now += seconds_per_frame(count, number) * frames
    return used


def _tuner(most: int, recheck: int = 256) -> tuple[ThreadTuner, _Clock, list[int]]:
    clock, sets = _Clock(), []
    return ThreadTuner(most, sets.append, clock=clock, recheck=recheck), clock, sets


PROBE_BATCHES = WARMUP + 2 * PROBE * ROUNDS


def test_candidates() -> None:
    assert thread_candidates(1) == (1,)
    assert thread_candidates(2) == (2, 1)
    assert thread_candidates(16) == (16, 15)
    assert thread_candidates(0) == (1,)


def test_one_thread_is_never_changed() -> None:
    tuner, clock, sets = _tuner(1)
    assert set(_drive(tuner, clock, 50, lambda c, n: 0.05)) == {1}
    assert sets == [] and tuner.chosen is None


def test_keeps_the_faster_count_after_trying_both() -> None:
    for faster, slower in ((1, 2), (2, 1)):
        tuner, clock, sets = _tuner(2)

        def period(count: int, number: int, faster: int = faster) -> float:
            return 0.05 if count == faster else 0.07

        used = _drive(tuner, clock, PROBE_BATCHES + 40, period)
        assert used[:WARMUP] == [2] * WARMUP  # warm-up at the caller's count
        probe = used[WARMUP:PROBE_BATCHES]
        assert probe.count(1) == probe.count(2) == PROBE * ROUNDS  # both tried, A B A B
        assert tuner.chosen == faster
        assert set(used[PROBE_BATCHES + 1 :]) == {faster}
        assert slower in sets  # it was really set while probing


def test_a_switch_first_batch_does_not_decide() -> None:
    # With 1 thread every batch is a little faster, except the first one after each switch
    # to 1, which is very slow (the previous count's work still queued): 1 must still win.
    tuner, clock, _ = _tuner(2)
    previous = [2]

    def period(count: int, number: int) -> float:
        switched = count != previous[0]
        previous[0] = count
        if count == 1:
            return 1.0 if switched else 0.05
        return 0.06

    _drive(tuner, clock, PROBE_BATCHES + 4, period)
    assert tuner.chosen == 1


def test_probes_again_and_follows_a_change() -> None:
    recheck = 20
    tuner, clock, _ = _tuner(2, recheck=recheck)
    turn = PROBE_BATCHES + recheck  # after the first choice and one recheck interval

    def period(count: int, number: int) -> float:
        faster = 1 if number < turn else 2
        return 0.05 if count == faster else 0.08

    # to 10 batches after the second choice (the next probe comes `recheck` batches later)
    used = _drive(tuner, clock, turn + 2 * PROBE * ROUNDS + 10, period)
    assert used[PROBE_BATCHES + 5] == 1
    assert tuner.chosen == 2 and used[-10:] == [2] * 10


def test_restore_goes_back_to_the_ceiling_and_keeps_the_choice() -> None:
    tuner, clock, sets = _tuner(2)
    _drive(tuner, clock, PROBE_BATCHES + 2, lambda c, n: 0.05 if c == 1 else 0.09)
    assert tuner.current == 1
    tuner.restore()
    assert sets[-1] == 2  # the thread's count is back at the ceiling...
    assert tuner.current == tuner.chosen == 1  # ...and the tuner still knows its choice


def test_a_lent_tuner_goes_on_where_the_last_run_stopped() -> None:
    from streamseg.video.thread_tuner import lend_tuner, return_tuner

    work = ("test", "lend", 1)
    first: list[int] = []
    tuner = lend_tuner(work, 2, first.append)
    clock = _Clock()
    tuner._clock = clock  # a test clock for the whole test
    part = WARMUP + PROBE + 4  # stopped mid-probe, in the block of 1 thread
    used = _drive(tuner, clock, part, lambda c, n: 0.05 if c == 1 else 0.09)
    return_tuner(work, tuner)
    assert first[-1] == 2  # given back at the ceiling
    second: list[int] = []
    again = lend_tuner(work, 2, second.append)
    assert again is tuner and second == [tuner.current]  # the run's count, set at once
    clock.now += 1000.0  # the gap between two runs is no period
    used += _drive(again, clock, PROBE_BATCHES - part + 5, lambda c, n: 0.05 if c == 1 else 0.09)
    assert tuner.chosen == 1 and used[-5:] == [1] * 5  # the probe ended in the second run
    assert used[:PROBE_BATCHES].count(2) == WARMUP + PROBE * ROUNDS
    return_tuner(work, again)
    assert lend_tuner(work, 4, second.append) is not tuner  # another ceiling: another tuner
    busy = lend_tuner(work, 2, second.append)
    assert lend_tuner(work, 2, second.append) is not busy  # one run at a time per tuner


def test_a_run_first_batch_is_no_sample() -> None:
    tuner, clock, _ = _tuner(2)
    _drive(tuner, clock, WARMUP + PROBE + 1, lambda c, n: 0.05)  # into the probe of 1 thread
    samples = sum(len(s) for s in tuner._samples.values())
    tuner.begin(lambda count: None)
    _drive(tuner, clock, 3, lambda c, n: 0.05)
    # three batches of the probe: the cold first one is no sample, the second is (recorded at
    # the third's start); without the rule it would be two
    assert sum(len(s) for s in tuner._samples.values()) == samples + 1
