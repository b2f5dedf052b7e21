"""realtime.outbox: one socket's way out, stepped by hand, bounded when the client stops reading."""

from __future__ import annotations

import asyncio

from realtime.outbox import CLOSE_TOO_SLOW, Outbox


def frame(n: int) -> dict:
    return {"type": "websocket.send", "text": str(n)}


class StallingSend:
    """An ASGI send whose transport is full from frame `stall_from` on, until the client reads."""

    def __init__(self, stall_from: int) -> None:
        self.stall_from = stall_from
        self.reading = asyncio.Event()
        self.sent: list[dict] = []

    async def __call__(self, message: dict) -> None:
        if message["type"] == "websocket.send" and int(message["text"]) >= self.stall_from:
            await self.reading.wait()
            await asyncio.sleep(0)  # a second suspension: the outbox must drive the whole coroutine
        self.sent.append(message)


def test_frames_go_out_in_order_and_at_once_while_the_client_reads():
    async def scenario():
        send = StallingSend(stall_from=10**9)
        overflowed = []
        box = Outbox(send, capacity=3, on_overflow=lambda: overflowed.append(True))
        for n in range(50):
            box.put(frame(n))
        await asyncio.sleep(0.01)
        assert [m["text"] for m in send.sent] == [str(n) for n in range(50)]
        assert box.backlog == 0 and not overflowed and not box.closed

    asyncio.run(scenario())


def test_a_stalled_client_keeps_its_place_in_line_and_catches_up_when_it_reads():
    async def scenario():
        send = StallingSend(stall_from=2)

        async def publisher():  # puts from another task, as the hub does
            for n in range(5):
                box.put(frame(n))
                await asyncio.sleep(0.001)

        box = Outbox(send, capacity=10, on_overflow=lambda: None)
        await asyncio.ensure_future(publisher())
        assert [m["text"] for m in send.sent] == ["0", "1"] and box.backlog == 2  # 2 waits, 3 and 4 queue
        send.reading.set()
        await asyncio.sleep(0.05)
        assert [m["text"] for m in send.sent] == ["0", "1", "2", "3", "4"]
        assert box.backlog == 0 and not box.closed

    asyncio.run(scenario())


def test_past_its_capacity_the_backlog_is_dropped_and_the_socket_closed_with_1013():
    async def scenario():
        send = StallingSend(stall_from=1)
        overflowed = []
        box = Outbox(send, capacity=3, on_overflow=lambda: overflowed.append(True))
        for n in range(100):
            box.put(frame(n))
            assert box.backlog <= 3
        assert overflowed == [True] and box.closed
        box.put(frame(101))  # nothing goes out after the close
        send.reading.set()
        await asyncio.sleep(0.05)
        texts = [m.get("text") for m in send.sent]
        assert texts[:2] == ["0", "1"] and send.sent[-1] == {"type": "websocket.close", "code": CLOSE_TOO_SLOW}
        assert len(send.sent) == 3

    asyncio.run(scenario())


def test_a_send_that_fails_marks_the_box_closed_and_raises_nothing():
    async def scenario():
        async def gone(message):
            raise OSError("client went away")

        box = Outbox(gone, capacity=3, on_overflow=lambda: None)
        box.put(frame(1))
        assert box.closed

    asyncio.run(scenario())
