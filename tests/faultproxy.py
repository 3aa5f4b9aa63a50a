"""A fault-injecting HTTP proxy on loopback, for retry tests: one request per connection, one fault per connection.

Faults, taken in order from a script (then "ok" forever):
  ok            forward the request, return the answer
  429, 503      answer that status without asking the server
  reset         reset the connection (RST) before the server sees the request
  close         close the connection without any answer, before the server sees the request
  stall         say nothing for `stall_s` (the client's read timeout fires)
  reset_after   forward the request, let the server answer, then reset instead of passing the answer on
  close_after   forward the request, let the server answer, then close without passing the answer on
  cut_after     forward, then pass on only the first half of the answer and close
"""

from __future__ import annotations

import socket
import struct
import threading
import time

FAULTS = ("ok", "429", "503", "reset", "close", "stall", "reset_after", "close_after", "cut_after")


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body


def _reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


class FaultProxy:
    """`with FaultProxy(upstream_port, ["503", "reset"]) as url:` …; `.log` lists the fault applied per connection."""

    def __init__(self, upstream_port: int, script: list[str], stall_s: float = 3.0) -> None:
        assert all(f in FAULTS for f in script), script
        self.upstream_port, self.script, self.stall_s = upstream_port, list(script), stall_s
        self.log: list[str] = []
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._stop = False

    def __enter__(self) -> str:
        threading.Thread(target=self._serve, daemon=True).start()
        return self.url

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                fault = self.script.pop(0) if self.script else "ok"
                self.log.append(fault)
            threading.Thread(target=self._handle, args=(conn, fault), daemon=True).start()

    def _handle(self, conn: socket.socket, fault: str) -> None:
        try:
            request = _read_request(conn)
            if fault in ("429", "503"):
                body = b'{"object":"error","message":"injected","type":"injected","code":null}'
                reason = b"Too Many Requests" if fault == "429" else b"Service Unavailable"
                conn.sendall(b"HTTP/1.1 " + fault.encode() + b" " + reason + b"\r\ncontent-type: application/json\r\n"
                             b"retry-after: 0.05\r\nconnection: close\r\ncontent-length: " +
                             str(len(body)).encode() + b"\r\n\r\n" + body)
                conn.close()
                return
            if fault == "reset":
                return _reset(conn)
            if fault == "close":
                return conn.close()
            if fault == "stall":
                time.sleep(self.stall_s)
                return conn.close()
            answer = b""
            with socket.create_connection(("127.0.0.1", self.upstream_port), timeout=60) as up:
                up.sendall(request)
                while True:
                    chunk = up.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
            if fault == "reset_after":
                return _reset(conn)
            if fault == "close_after":
                return conn.close()
            if fault == "cut_after":
                conn.sendall(answer[: len(answer) // 2])
                return conn.close()
            conn.sendall(answer)
            conn.close()
        except OSError:
            conn.close()
