"""A web process's intake of bids, socket and REST: group commit.

Every socket bid used to take its own trip to a thread and its own round trips (the checks' read, the
rate-limit script, the intake statement, the doorbell mark): at a few hundred bids/s per process
those per-bid costs were most of a web process's CPU. Here the bids that arrive while a batch is
being stored wait for the next batch, and each batch is one thread hop and
auctions.services.bids_submit_many's per-batch round trips. A lone bid goes at once (a batch of
one), so nothing waits for a timer; the busier the process, the larger the batches.

Order: a socket sends its next bid only once the previous one is answered (a consumer handles
its frames one at a time), so one socket's bids are in order whatever batch they fall in. Bids
of different sockets get positions in the order their batches commit, as before.

REST bids come here too (`submit_from_view`): the bid view's thread hands its bid to the loop that
serves the request and waits for the batch's answer, so a REST bid costs its share of a batch
rather than the round trips of one. Outside a served request (Django's test Client runs the view
on the test's thread, inside the test's transaction) there is no loop to hand it to, and the bid
is stored on the calling thread as a batch of one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.db import database_sync_to_async
from django.db import connection

from auctions import selectors, services
from core.asgi_handler import server_loop
from core.errors import ServiceError

# Batches stored at once per process: one is being stored while the next fills; a second keeps
# the database round trip of one from idling the process.
IN_FLIGHT = 2
MAX_BATCH = 200


class BidIntake:
    def __init__(self) -> None:
        self.waiting: list[tuple[services.Submission, asyncio.Future]] = []
        self.running: set[asyncio.Task] = set()

    async def submit(self, submission: services.Submission) -> tuple[dict[str, Any], bool]:
        """The bid as the contract shows it to its bidder, and whether it was stored now (False:
        a repeated client_bid_id; the bid is the original, as it stands). Raises the contract's
        ServiceError for a refusal, or the batch's error (the database or Redis down) for every
        bid of that batch: none of them is acknowledged, and a client sending one again with its
        client_bid_id gets the bid if it was stored after all."""
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((submission, future))
        if len(self.running) < IN_FLIGHT:
            task = asyncio.get_running_loop().create_task(self._drain())
            self.running.add(task)
            task.add_done_callback(self.running.discard)
        return await future

    async def _drain(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting[:MAX_BATCH], self.waiting[MAX_BATCH:]
            try:
                # Not thread-sensitive: Channels would run every socket's calls on one thread.
                answers = await database_sync_to_async(_store, thread_sensitive=False)([s for s, _ in batch])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting bid; the consumer answers it
                answers = [exc] * len(batch)
            for (_, future), answer in zip(batch, answers, strict=True):
                if future.done():  # its socket went away meanwhile
                    continue
                if isinstance(answer, BaseException):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)


def _store(submissions: list[services.Submission]) -> list[tuple[dict[str, Any], bool] | ServiceError]:
    out: list[tuple[dict[str, Any], bool] | ServiceError] = []
    for s, answer in zip(submissions, services.bids_submit_many(submissions), strict=True):
        if isinstance(answer, ServiceError):
            out.append(answer)
            continue
        out.append((selectors.bid_data(answer.bid, viewer=s.user), answer.created))
    return out


def submit_from_view(submission: services.Submission) -> tuple[dict[str, Any], bool]:
    """BidIntake.submit for sync code: the request's bid joins the serving loop's next batch."""
    loop = server_loop.get()
    if loop is None or loop.is_closed():
        answer = _store([submission])[0]
        if isinstance(answer, ServiceError):
            raise answer
        return answer

    if not connection.in_atomic_block:
        # Back to the pool while the batch runs: the batch's thread needs one, and a process's
        # requests waiting on batches must not hold every pooled connection between them.
        connection.close()

    async def submit() -> tuple[dict[str, Any], bool]:
        return await bid_intake().submit(submission)

    return asyncio.run_coroutine_threadsafe(submit(), loop).result()


_intakes: dict[asyncio.AbstractEventLoop, BidIntake] = {}


def bid_intake() -> BidIntake:
    """The running event loop's intake (a web process has one loop; tests may run several)."""
    loop = asyncio.get_running_loop()
    intake = _intakes.get(loop)
    if intake is None:
        for other in [other for other in _intakes if other.is_closed()]:
            del _intakes[other]
        intake = _intakes[loop] = BidIntake()
    return intake
