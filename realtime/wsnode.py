"""The web node's WebSocket protocol: uvicorn's sans-I/O one, plus frames prepared once.

An event goes to every watching socket of a process as the same bytes, so the hub frames it once
(`prepare`) and hands each socket an ASGI `websocket.send` message that carries the finished
frame under FRAME_KEY next to the usual `text`. This protocol writes those bytes to the transport
as they are; any other server, or this one when it cannot (a compression extension was
negotiated, the connection is closing, the transport is full), ignores the key and sends `text`
the ordinary way. Server-to-client frames are never masked, so the bytes are the same for every
client.

Used by `uvicorn --ws realtime.wsnode:PreparedFrameProtocol` (deploy/launch.py WEB_NODE). Web
nodes also run with `--ws-per-message-deflate false`: compression is per socket, so it would undo
the once-per-event framing, and event frames are a few hundred bytes.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import OP_TEXT, Frame
from websockets.protocol import OPEN

FRAME_KEY = "gavel.frame"
# A run of events as one message: FRAME_KEY holds all their frames, TEXTS_KEY their texts for
# when the bytes cannot be written as they are. Only sent to sockets whose scope carries
# FRAME_KEY among its extensions, that is, to sockets this protocol serves.
TEXTS_KEY = "gavel.texts"


def prepare(text: str) -> dict[str, Any]:
    """The ASGI message for one text frame, with the frame's bytes ready for every socket."""
    return {"type": "websocket.send", "text": text, FRAME_KEY: Frame(OP_TEXT, text.encode()).serialize(mask=False)}


def prepare_run(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """One ASGI message that sends the frames of `messages` (from `prepare`) back to back:
    one write per socket for a run of events instead of one per event."""
    if len(messages) == 1:
        return messages[0]
    return {"type": "websocket.send", FRAME_KEY: b"".join(m[FRAME_KEY] for m in messages),
            TEXTS_KEY: [m["text"] for m in messages]}


def serves_prepared_runs(scope: dict[str, Any]) -> bool:
    return FRAME_KEY in scope.get("extensions", {})


class PreparedFrameProtocol(WebSocketsSansIOProtocol):
    async def run_asgi(self) -> None:
        # Tells the application (realtime.consumers) that it may send prepare_run messages.
        self.scope["extensions"][FRAME_KEY] = {}
        await super().run_asgi()

    async def send(self, message: Any) -> None:
        frame = message.get(FRAME_KEY)
        if (
            frame is not None
            and self.writable.is_set()
            and self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and self.initial_response is None
            and self.conn.state is OPEN
            and not self.conn.extensions
        ):
            self.transport.write(frame)
            return
        texts = message.get(TEXTS_KEY)
        if texts is not None:
            for text in texts:
                await super().send({"type": "websocket.send", "text": text})
            return
        await super().send(message)
        if message["type"] == "websocket.accept":
            # The handshake's request and response are not read again; each socket would keep
            # them (a few KB of headers) for its whole life.
            self.request = self.response = None
