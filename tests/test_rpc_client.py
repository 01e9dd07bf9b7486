"""The blocking RPC client turns every way a node can fail to answer into RPCUnavailable."""

from __future__ import annotations

import socket
import threading

import pytest

from node.rpc_client import RPCClient, RPCUnavailable


@pytest.mark.parametrize("answer", [b"POST / HTTP/1.1\r\n\r\n", b"garbage\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\""])
def test_a_garbled_or_cut_http_answer_is_unavailable_not_a_crash(answer: bytes) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with pytest.raises(RPCUnavailable):
            RPCClient(f"http://127.0.0.1:{listener.getsockname()[1]}/", timeout=5).call("qenex_status")
    finally:
        thread.join(5)
        listener.close()


def test_nothing_listening_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RPCUnavailable, match="cannot reach"):
        RPCClient(f"http://127.0.0.1:{port}/", timeout=2).call("qenex_status")
