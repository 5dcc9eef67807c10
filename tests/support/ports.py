"""Free local TCP ports for the servers tests and scripts start (brokers, workers, Triton, relays)."""

from __future__ import annotations

import socket


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports nothing listens on now: all are held at once, so none is handed out twice."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    """One port nothing listens on now."""
    (port,) = free_ports(1)
    return port
