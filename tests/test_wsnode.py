"""realtime.wsnode: the node's WebSocket protocol writes a frame prepared once, byte-exact, and
falls back to uvicorn's own send wherever it cannot (here: per-message deflate negotiated).
A real uvicorn server on a loopback port and a real `websockets` client."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from realtime import wsnode

TEXTS = ["{}", '{"type":"event","event":{"seq":2}}', "é" * 200, "x" * 70_000]  # 7-, 16- and 64-bit lengths


SCOPES: list[dict] = []


async def app(scope, receive, send):
    """The first text as one prepared frame, the rest as one run (one message, one write)."""
    SCOPES.append(scope)
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    assert wsnode.serves_prepared_runs(scope)
    await send(wsnode.prepare(TEXTS[0]))
    await send(wsnode.prepare_run([wsnode.prepare(text) for text in TEXTS[1:]]))
    await send({"type": "websocket.close", "code": 1000})


@pytest.fixture
def node(request):
    deflate = request.param
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, ws=wsnode.PreparedFrameProtocol,
                            ws_per_message_deflate=deflate, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        threading.Event().wait(0.02)
    yield f"ws://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(5)


def receive_all(url: str, *, compress: bool) -> tuple[list[str], list[str]]:
    async def scenario():
        extensions = [ClientPerMessageDeflateFactory()] if compress else None
        async with connect(url, compression=None, extensions=extensions, max_size=None) as ws:
            texts = [await ws.recv() for _ in TEXTS]
            return texts, [e.name for e in ws.protocol.extensions]

    return asyncio.run(scenario())


@pytest.mark.parametrize("node", [False], indirect=True)
def test_prepared_frames_arrive_as_the_texts_they_carry(node, monkeypatch):
    slow_path = []
    real = wsnode.WebSocketsSansIOProtocol.send

    async def counted(self, message):
        slow_path.append(message["type"])
        await real(self, message)

    monkeypatch.setattr(wsnode.WebSocketsSansIOProtocol, "send", counted)
    texts, extensions = receive_all(node, compress=False)
    assert texts == TEXTS and extensions == []
    assert "websocket.send" not in slow_path, "each frame went out as the prepared bytes"
    assert SCOPES and all(wsnode.serves_prepared_runs(scope) for scope in SCOPES)


@pytest.mark.parametrize("node", [True], indirect=True)
def test_with_deflate_negotiated_frames_go_the_ordinary_way(node):
    # A run's frames cannot go out as prepared bytes here: the protocol sends its texts one by one.
    texts, extensions = receive_all(node, compress=True)
    assert extensions == ["permessage-deflate"] and texts == TEXTS
