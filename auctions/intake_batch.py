"""A web process's intake of bids, socket and REST alike: group commit.

Every bid used to take its own trip to a thread and its own round trips (the checks' read, the
rate-limit script, the intake statement, the doorbell mark): at a few hundred bids/s per process
those per-bid costs were most of a web process's CPU. Here the bids that arrive while a batch is
being stored wait for the next batch, and each batch is one thread hop and
auctions.services.bids_submit_many's per-batch round trips. A lone bid goes at once (a batch of
one), so nothing waits for a timer; the busier the process, the larger the batches.

Order: a socket sends its next bid only once the previous one is answered (a consumer handles
its frames one at a time), and a REST client's request is answered before it sends its next, so
one client's bids are in order whatever batch they fall in. Bids of different clients get
positions in the order their batches commit, as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from auctions import selectors, services
from core.errors import ServiceError

# Batches stored at once per process: one is being stored while the next fills; a second keeps
# the database round trip of one from idling the process.
IN_FLIGHT = 2
MAX_BATCH = 200


class BidIntake:
    def __init__(self, *, thread_sensitive: bool = False) -> None:
        self.thread_sensitive = thread_sensitive
        self.waiting: list[tuple[services.Submission, asyncio.Future]] = []
        self.running: set[asyncio.Task] = set()

    async def submit(self, submission: services.Submission) -> tuple[dict[str, Any], bool]:
        """The bid as the contract shows it to its bidder, and whether it was stored now (False:
        a repeated client_bid_id; the bid is the original, as it stands). Raises the contract's
        ServiceError for a refusal, or the batch's error (the database or Redis down) for every
        bid of that batch: none of them was stored."""
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((submission, future))
        if len(self.running) < (1 if self.thread_sensitive else IN_FLIGHT):
            task = asyncio.get_running_loop().create_task(self._drain())
            self.running.add(task)
            task.add_done_callback(self.running.discard)
        return await future

    async def _drain(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting[:MAX_BATCH], self.waiting[MAX_BATCH:]
            try:
                # On Django's thread, Django's request signals look after its connection;
                # elsewhere database_sync_to_async does.
                store = (sync_to_async(_store, thread_sensitive=True) if self.thread_sensitive
                         else database_sync_to_async(_store, thread_sensitive=False))
                answers = await store([s for s, _ in batch])
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


_intakes: dict[tuple[asyncio.AbstractEventLoop, bool], BidIntake] = {}


def bid_intake(*, thread_sensitive: bool = False) -> BidIntake:
    """The running event loop's intake (a web process has one loop; tests may run several).

    Socket bids are stored on any thread: on Django's one thread for sync code, every socket of
    the process would wait for each other's round trips. REST bids are stored on that thread,
    where Django ran the sync view they came from (and where Django's test client finds the
    test's transaction), one batch at a time."""
    loop = asyncio.get_running_loop()
    intake = _intakes.get((loop, thread_sensitive))
    if intake is None:
        for key in [key for key in _intakes if key[0].is_closed()]:
            del _intakes[key]
        intake = _intakes[(loop, thread_sensitive)] = BidIntake(thread_sensitive=thread_sensitive)
    return intake
