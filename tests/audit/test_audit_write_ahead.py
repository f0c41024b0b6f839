"""The QuestDB sink's write-ahead file: cut per batch, segments deleted once their rows are
delivered, nothing left after a clean close, everything left after a kill."""

from __future__ import annotations

from tradewire.core.audit import read_journal, transition_event
from tradewire.core.audit.write_ahead import WriteAhead

TS = 1_764_000_000_000_000_000


def _events(n: int, start: int = 0):
    return [transition_event(request_id="req-1", principal="alice", mode="paper", stage="QUOTED", sequence=i,
                             percent=0.5, message=f"step {i}", ts_ns=TS + i) for i in range(start, start + n)]


def _sequences(paths) -> list[int]:
    return sorted(ev.columns["sequence"] for path in paths for ev in read_journal(path))


async def test_a_segment_goes_once_every_row_queued_before_its_cut_is_delivered(tmp_path):
    ahead = WriteAhead(tmp_path / "spool.jsonl.ahead")
    await ahead.start()
    for ev in _events(10):
        ahead.emit(ev)
    await ahead._journal.flush()
    ahead.cut(10)  # the sink took rows 0-9 (its 10 queued so far) into a batch
    for ev in _events(5, start=10):
        ahead.emit(ev)
    await ahead._journal.flush()
    ahead.cut(15)
    assert _sequences(ahead.leftovers()) == list(range(15))

    ahead.delivered(9)  # the first batch is not all out yet: its segment stays
    assert _sequences(ahead.leftovers()) == list(range(15))
    ahead.delivered(10)
    assert _sequences(ahead.leftovers()) == list(range(10, 15))
    ahead.delivered(15)
    assert ahead.leftovers() == []

    for ev in _events(3, start=15):  # queued, not yet taken: a kill now leaves them behind
        ahead.emit(ev)
    await ahead._journal.flush()
    assert _sequences(ahead.leftovers()) == [15, 16, 17]
    await ahead.discard()  # a clean close: all delivered or spooled, nothing kept
    assert ahead.leftovers() == []
