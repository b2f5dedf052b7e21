"""Summarise a py-spy `record -f raw` profile of a web node taken by `ws_fanout --profile DIR`.

    python -m bench.profile_summary /tmp/prof/node0.folded

Prints where the node's sampled CPU goes, per category of the per-frame fan-out path (the first
matching rule wins, looked for anywhere in the stack), then the top functions by self time.
py-spy samples each thread that is not idle, so the shares are shares of the process's CPU.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

CATEGORIES = [
    ("thread hop: Channels dispatch -> aclose_old_connections (sync_to_async), loop side",
     ("aclose_old_connections",)),
    ("thread hop: the sync thread running close_old_connections / other sync work",
     ("concurrent/futures/thread.py",)),
    ("websocket send: consumer.send -> uvicorn asgi_send -> websockets frame write",
     ("asgi_send", "write_frame", "InstanceSessionWrapper.send")),
    ("channel layer: msgpack deserialize per consumer", ("deserialize",)),
    ("channel layer: Redis pub/sub read + put into every consumer queue",
     ("_do_receiving", "_receive_message")),
    ("consumer handler (auction_event) itself", ("auction_event",)),
    ("Channels await_many_dispatch: asyncio.wait + a new task per message", ("await_many_dispatch",)),
    ("uvicorn/websockets keepalive and reading", ("keepalive_ping", "read_frame", "read_message",
                                                  "data_received")),
    ("event loop, other", ("",)),
]


def _short(frame: str) -> str:
    frame = re.sub(r":\d+\)$", ")", frame)
    frame = re.sub(r"\(/.*?/site-packages/", "(", frame)
    return re.sub(r"\(/.*?/lib/python3\.\d+/", "(stdlib/", frame)


def main(path: str) -> None:
    total = 0
    cats: Counter = Counter()
    self_time: Counter = Counter()
    with open(path) as fh:
        for line in fh:
            line = line.rstrip()
            if not line or " " not in line:
                continue
            stack, count = line.rsplit(" ", 1)
            n = int(count)
            total += n
            frames = stack.split(";")
            self_time[_short(frames[-1])] += n
            for name, needles in CATEGORIES:
                if any(needle in stack for needle in needles):
                    cats[name] += n
                    break
    print(f"{total} samples in {path}")
    for name, _ in CATEGORIES:
        if cats[name]:
            print(f"  {100 * cats[name] / total:5.1f}%  {name}")
    print("top functions by self time:")
    for name, n in self_time.most_common(15):
        print(f"  {100 * n / total:5.1f}%  {name}")


if __name__ == "__main__":
    for p in sys.argv[1:]:
        main(p)
