"""The channel layer: channels-redis's pub/sub layer (one PUBLISH per group message, one Redis
subscription per group and process) with a bounded buffer per consumer.

channels-redis keeps an unbounded asyncio.Queue per consumer channel, so a web process whose
event loop falls behind would grow its memory without limit. Here each queue holds at most
`capacity` messages; past that the buffered messages are dropped, and so is every message until
the consumer (the process's hub, realtime.hub) has read the single `layer.overflow` message left
in their place, on which its sockets refill from the event log, which has everything. Dropped
messages are counted (`gavel_ws_frames_dropped_total{where="process"}`).
"""

from __future__ import annotations

import asyncio

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, _wrap_close

from core import counters

OVERFLOW = {"type": "layer.overflow"}


class _BoundedQueue(asyncio.Queue):
    def __init__(self, capacity: int, marker: bytes):
        super().__init__()
        self.capacity = capacity
        self.marker = marker
        self.overflowed = False

    def put_nowait(self, item) -> None:
        if self.overflowed:
            counters.buffered(counters.WS_FRAMES_DROPPED, where="process")
            return
        if self.qsize() >= self.capacity:
            counters.buffered(counters.WS_FRAMES_DROPPED, self.qsize() + 1, where="process")
            self.overflowed = True
            while not self.empty():
                self.get_nowait()
            item = self.marker
        super().put_nowait(item)

    def _get(self):
        item = super()._get()
        if item is self.marker:
            # The consumer now refills from the event log, which holds everything dropped so
            # far; what arrives from here on is delivered again (until the next overflow).
            self.overflowed = False
        return item


class _BoundedLoopLayer(RedisPubSubLoopLayer):
    def __init__(self, *args, capacity: int = 200, **kwargs):
        super().__init__(*args, **kwargs)
        self.capacity = capacity

    async def _subscribe_to_channel(self, channel):
        self.channels[channel] = _BoundedQueue(self.capacity, self.channel_layer.serialize(OVERFLOW))
        shard = self._get_shard(channel)
        await shard.subscribe(channel)


    async def group_send_many(self, messages: list[tuple[str, dict]]) -> None:
        """group_send for each (group, message), in order, one pipeline per shard: a decided
        batch's user frames cost one round trip, not one each (channels-redis 4.3's shard
        connection: its lock, _ensure_redis and client, as its own publish uses them)."""
        by_shard: dict[object, list[tuple[str, bytes]]] = {}
        for group, message in messages:
            channel = self._get_group_channel_name(group)
            by_shard.setdefault(self._get_shard(channel), []).append(
                (channel, self.channel_layer.serialize(message)))
        for shard, published in by_shard.items():
            async with shard._lock:
                shard._ensure_redis()
                pipe = shard._redis.pipeline(transaction=False)
                for channel, payload in published:
                    pipe.publish(channel, payload)
                await pipe.execute()


class BoundedPubSubChannelLayer(RedisPubSubChannelLayer):
    def __init__(self, *args, capacity: int = 200, **kwargs):
        super().__init__(*args, **kwargs)
        self.capacity = capacity

    def _get_layer(self):
        loop = asyncio.get_running_loop()
        try:
            return self._layers[loop]
        except KeyError:
            layer = _BoundedLoopLayer(*self._args, capacity=self.capacity, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            _wrap_close(self, loop)
            return layer

    async def group_send_many(self, messages: list[tuple[str, dict]]) -> None:
        await self._get_layer().group_send_many(messages)
