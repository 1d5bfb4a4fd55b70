"""A loopback TCP proxy that can take a service off the network and bring it back.

The local Kafka broker (tansu) keeps its data in memory, so stopping it to simulate an
outage would also lose every record written so far, and a test could no longer tell a
lost change from a lost broker. Putting this proxy between the clients and a broker that
*advertises the proxy's address* makes every client connection (bootstrap and the broker
connections learnt from metadata) pass through here, so an outage can be cut and healed
while the broker, and its data, stay up.

Two ways to be down, because clients meet both in production:

- ``cut("refuse")``: every open connection is reset (RST) and the listening socket is
  closed, so new connections are refused at once, as when the broker process is gone.
- ``cut("blackhole")``: open connections stay up but every byte in either direction is
  dropped, and new connections are accepted but never answered, as in a network
  partition; clients only notice through their own timeouts.

``restore()`` ends either: the listener is back on the same port, and connections held
in a blackhole are reset so clients reconnect instead of waiting for replies that will
never come.
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["TcpProxy"]

HOST = "127.0.0.1"
CutMode = Literal["refuse", "blackhole"]


def _reset(sock: socket.socket) -> None:
    """Close with RST rather than FIN: the peer sees the connection break, not end."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _close_listener(sock: socket.socket) -> None:
    """Stop listening *now*. close() alone leaves the socket listening while another
    thread sits in accept() on it; shutdown() takes it out of the listen state at once,
    so new connections are refused rather than queued."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@dataclass(eq=False)
class _Link:
    client: socket.socket
    upstream: socket.socket | None
    blackholed: bool = False
    closed: bool = False
    threads: list[threading.Thread] = field(default_factory=list)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for s in (self.client, self.upstream):
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        _reset(self.client)
        if self.upstream is not None:
            _reset(self.upstream)


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream``; see the module docstring.

    ``upstream`` may be set after ``start()`` (the broker needs the proxy's port for its
    advertised address before the broker's own port is in use), but before the first
    client connects.
    """

    def __init__(self, upstream: tuple[str, int] | None = None, *, port: int = 0) -> None:
        self.upstream = upstream
        self._requested_port = port
        self._port: int | None = None
        self._listener: socket.socket | None = None
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._mode: CutMode | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        #: Connections accepted in total, and while cut (refused ones never arrive).
        self.accepted = 0
        self.accepted_while_cut = 0
        #: Bytes passed through (both directions), and bytes swallowed by a blackhole.
        self.bytes_forwarded = 0
        self.bytes_dropped = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> TcpProxy:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._listen()
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            listener, self._listener = self._listener, None
            links = list(self._links)
            self._links.clear()
        if listener is not None:
            _close_listener(listener)
        for link in links:
            link.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("not started")
        return self._port

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def is_cut(self) -> bool:
        return self._mode is not None

    @property
    def open_connections(self) -> int:
        with self._lock:
            return sum(1 for link in self._links if not link.closed)

    # ------------------------------------------------------------------ faults

    def cut(self, mode: CutMode = "refuse") -> None:
        """Take the upstream off the network; see the module docstring for the modes."""
        if mode not in ("refuse", "blackhole"):
            raise ValueError("mode is 'refuse' or 'blackhole'")
        with self._lock:
            self._mode = mode
            links = list(self._links)
            listener = None
            if mode == "refuse":
                listener, self._listener = self._listener, None
                self._links.clear()
            else:
                for link in links:
                    link.blackholed = True
        if listener is not None:
            _close_listener(listener)
        if mode == "refuse":
            for link in links:
                link.close()

    def restore(self) -> None:
        """Heal the cut: listen again on the same port, reset blackholed connections."""
        with self._lock:
            mode, self._mode = self._mode, None
            held = [link for link in self._links if link.blackholed]
            for link in held:
                self._links.discard(link)
        for link in held:
            link.close()
        if mode == "refuse":
            self._listen()

    # ------------------------------------------------------------------ internals

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, self._port if self._port is not None else self._requested_port))
        sock.listen(128)
        sock.settimeout(0.05)
        self._port = sock.getsockname()[1]
        with self._lock:
            self._listener = sock

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                listener = self._listener
            if listener is None:
                self._stopping.wait(0.05)
                continue
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                continue  # closed by cut(); the loop picks up the new listener
            client.settimeout(None)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._serve(client)

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self.accepted += 1
            mode = self._mode
            if mode is not None:
                self.accepted_while_cut += 1
        if mode == "refuse":  # raced with cut(): the listener had one more in its backlog
            _reset(client)
            return
        if mode == "blackhole":
            link = _Link(client, None, blackholed=True)
            with self._lock:
                self._links.add(link)
            self._pump_thread(link, client, None)
            return
        if self.upstream is None:
            _reset(client)
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _reset(client)
            return
        upstream.settimeout(None)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = _Link(client, upstream)
        with self._lock:
            self._links.add(link)
        self._pump_thread(link, client, upstream)
        self._pump_thread(link, upstream, client)

    def _pump_thread(self, link: _Link, src: socket.socket, dst: socket.socket | None) -> None:
        t = threading.Thread(target=self._pump, args=(link, src, dst), name="tcp-proxy-pump", daemon=True)
        link.threads.append(t)
        t.start()

    def _pump(self, link: _Link, src: socket.socket, dst: socket.socket | None) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if link.blackholed or dst is None:
                    self.bytes_dropped += len(data)
                    continue
                dst.sendall(data)
                self.bytes_forwarded += len(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._links.discard(link)
            link.close()
