"""WebSocket frames as a server writes them, for the bench clients' tests."""

from __future__ import annotations


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """An unmasked server-to-client frame, with the shortest length encoding."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes((b0, n))
    elif n < 65536:
        head = bytes((b0, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, 127)) + n.to_bytes(8, "big")
    return head + payload
