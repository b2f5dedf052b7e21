"""realtime.layer: the process's bounded channel buffer drops what it cannot hold, says so once,
and delivers again once the hub has read that it overflowed."""

from __future__ import annotations

import asyncio

from realtime.layer import _BoundedQueue


def test_after_an_overflow_is_read_messages_are_delivered_again():
    async def scenario():
        queue = _BoundedQueue(2, b"overflow")
        for text in (b"1", b"2", b"3", b"4"):  # 3 overflows the buffer; 4 is dropped too
            queue.put_nowait(text)
        assert queue.qsize() == 1 and await queue.get() == b"overflow"
        # The hub refills its sockets from the event log now; what is published next must arrive,
        # or every socket of the process would live on the 5 s audit alone from here on.
        queue.put_nowait(b"5")
        assert await asyncio.wait_for(queue.get(), 1) == b"5"
        for text in (b"6", b"7", b"8"):  # and a later overflow is reported again
            queue.put_nowait(text)
        assert await queue.get() == b"overflow"

    asyncio.run(scenario())
