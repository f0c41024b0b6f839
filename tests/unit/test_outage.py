"""core/outage.py: a dependency's outage said when it starts, at most every repeat_s while it
lasts, and when it ends — whatever the number of failed attempts."""

import logging

from tradewire.core.outage import Outage


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_thousands_of_failed_attempts_are_a_few_lines(caplog):
    caplog.set_level(logging.INFO, logger="test.outage")
    clock = Clock()
    outage = Outage(logging.getLogger("test.outage"), "the thing", "calls wait", repeat_s=60, clock=clock)
    outage.answered()  # no outage: nothing to say
    for _ in range(1000):  # 0.05 s apart: 50 s
        outage.failed(ConnectionError("refused"))
        clock.now += 0.05
    assert outage.active
    for _ in range(400):  # 20 s more: past a minute since it was said
        outage.failed(ConnectionError("refused"))
        clock.now += 0.05
    outage.answered()
    outage.answered()
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert said == [("WARNING", "the thing unavailable: calls wait"), ("WARNING", "the thing still unavailable"),
                    ("WARNING", "the thing answers again")]
    first, repeat, end = caplog.records
    assert first.error == "ConnectionError: refused"
    assert repeat.failures == 1201 and repeat.outage_s == 60.0
    assert end.failures == 1400 and end.outage_s == 70.0 and not outage.active
