"""Queue names. Each auction has its own queue, consumed by exactly one bid worker at a time."""

DEFAULT_QUEUE = "default"
BIDWORKER_BASE_QUEUE = "bidworkers"  # every bid worker listens here; nothing is routed to it
AUCTION_QUEUE_PREFIX = "auction."


def auction_queue(auction_id: int) -> str:
    return f"{AUCTION_QUEUE_PREFIX}{auction_id}"


def auction_id_of(queue: str) -> int | None:
    if not queue.startswith(AUCTION_QUEUE_PREFIX):
        return None
    tail = queue[len(AUCTION_QUEUE_PREFIX):]
    return int(tail) if tail.isdigit() else None
