"""A fault-injecting TCP proxy for the reliability tests (asyncio, in a thread).

It sits between the daemon and a real server on 127.0.0.1 and can
- count the bytes each way (what the daemon really sent, re-sends included),
- reset connections (RST both ways, as a dropped NAT entry or a crashed
  firewall does),
- stall a connection (nothing forwarded for a while, then it goes on),
- flip one bit of the client's stream (corruption on the wire); with
  `http_bodies`, only inside the body of a request of 64 KiB or more, so the
  corruption is in the data and never in a header (a flipped Content-Length
  would only hang the request until its timeout),
- cut the bandwidth (one token bucket shared by every connection).

Which connection gets which fault, and at what byte, is drawn from a seeded
random generator when the connection is accepted, so a failing run can be
replayed with the same seed. `max_faults` bounds the faults of a run: after
that the proxy only forwards, so the run must end well.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from servers import free_port

HOST = "127.0.0.1"
BLOCK = 64 * 1024
BIG_BODY = 64 * 1024


@dataclass
class Faults:
    """What to inject. Probabilities are per connection (one fault at most
    each); offsets count the bytes the client sent on that connection."""

    reset: float = 0.0
    stall: float = 0.0
    flip: float = 0.0
    stall_seconds: tuple[float, float] = (0.5, 1.5)
    offsets: tuple[int, int] = (64 * 1024, 6 * 1024 * 1024)
    rate: float | None = None  # bytes/s for both directions together; None: unlimited
    max_faults: int = 0
    http_bodies: bool = False  # flips land in request bodies only


@dataclass
class Injected:
    kind: str  # "reset" | "stall" | "flip"
    connection: int
    at_byte: int


@dataclass
class _Plan:
    kind: str | None
    at: int
    stall: float = 0.0


class _Bucket:
    """Token bucket with 0.1 s of burst."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = rate * 0.1
        self.tokens = self.burst
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self, n: int) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= min(n, self.burst):
                    self.tokens -= n
                    return
                await asyncio.sleep(max(0.005, (min(n, self.burst) - self.tokens) / self.rate))


class _HttpBodies:
    """Follows HTTP/1.1 requests in a client's stream (Content-Length bodies)
    to place a flip at a given stream offset if a big body holds it, else at
    the start of the next big body."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.pos = 0  # stream offset of the next byte fed
        self.head = b""
        self.body_left = 0
        self.target: int | None = None  # stream offset of the byte to flip

    def feed(self, data: bytes) -> None:
        i = 0
        while i < len(data):
            if self.body_left:
                step = min(self.body_left, len(data) - i)
                self.body_left -= step
                i += step
                continue
            end = (self.head + data[i:]).find(b"\r\n\r\n")
            if end < 0:
                self.head += data[i:]
                break
            used = end + 4 - len(self.head)
            head, self.head = self.head + data[i:i + used], b""
            i += used
            self.body_left = _content_length(head)
            body_at = self.pos + i
            if self.target is None and self.body_left >= BIG_BODY and body_at + self.body_left > self.after:
                self.target = max(body_at, self.after)  # the planned byte, or the first big body after it
        self.pos += len(data)


def _content_length(head: bytes) -> int:
    match = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
    return int(match.group(1)) if match else 0


@dataclass
class FaultProxy:
    target_port: int
    faults: Faults = field(default_factory=Faults)
    seed: int = 0
    port: int = 0
    bytes_up: int = 0  # client -> server, as forwarded
    bytes_down: int = 0
    connections: int = 0
    injected: list[Injected] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self.rng = random.Random(self.seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"faultproxy-{self.port}", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._bucket: _Bucket | None = None

    # ---- life cycle (called from the test's thread) ----------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def set_faults(self, faults: Faults) -> None:
        """New faults for connections accepted from now on (and the rate at once)."""
        def apply() -> None:
            self.faults = faults
            self._bucket = _Bucket(faults.rate) if faults.rate else None
        self._loop.call_soon_threadsafe(apply)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def counts(self) -> dict[str, int]:
        kinds: dict[str, int] = {}
        for item in list(self.injected):
            kinds[item.kind] = kinds.get(item.kind, 0) + 1
        return kinds

    # ---- inside the proxy's loop ---------------------------------------------------

    async def _listen(self) -> None:
        self._bucket = _Bucket(self.faults.rate) if self.faults.rate else None
        self._server = await asyncio.start_server(self._accept, HOST, self.port)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def _plan(self, conn: _Conn | None = None) -> _Plan:
        """The next fault of a connection: resets and stalls count the bytes
        moved both ways, flips the bytes the client sent."""
        f = self.faults
        if len(self.injected) >= f.max_faults:
            return _Plan(None, 0)
        roll, gap, stall = self.rng.random(), self.rng.randint(*f.offsets), self.rng.uniform(*f.stall_seconds)
        for kind, p in (("reset", f.reset), ("stall", f.stall), ("flip", f.flip)):
            if roll < p:
                base = 0 if conn is None else conn.up_seen if kind == "flip" else conn.moved
                return _Plan(kind, base + gap, stall)
            roll -= p
        return _Plan(None, 0)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            server_r, server_w = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            _reset(client_w)  # the server is down: the client sees a dropped connection
            return
        conn = _Conn(self.connections, (client_w, server_w), self._plan())
        if self.faults.http_bodies:
            conn.bodies = _HttpBodies(conn.plan.at)
        self._writers.update(conn.pair)
        up = asyncio.ensure_future(self._pump(client_r, server_w, conn, upstream=True))
        down = asyncio.ensure_future(self._pump(server_r, client_w, conn, upstream=False))
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass  # the proxy is closing
        for task in (up, down):
            if not task.done():
                task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        for writer in conn.pair:
            self._writers.discard(writer)
            if not writer.is_closing():
                writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Conn,
                    upstream: bool) -> None:
        try:
            while data := await reader.read(BLOCK):
                forward = await self._fault(conn, data, upstream)
                if forward is None:
                    return
                while conn.stalled_until > time.monotonic():  # a stall holds both directions
                    await asyncio.sleep(conn.stalled_until - time.monotonic())
                if self._bucket is not None:
                    await self._bucket.take(len(forward))
                if upstream:
                    self.bytes_up += len(forward)
                else:
                    self.bytes_down += len(forward)
                writer.write(forward)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            await asyncio.Event().wait()  # half-closed: the other direction ends the connection
        except (ConnectionError, OSError):
            return

    async def _fault(self, conn: _Conn, data: bytes, upstream: bool) -> bytes | None:
        """`data` as it goes on (None: the connection was reset)."""
        if len(self.injected) >= self.faults.max_faults:  # other connections used up the faults
            conn.plan = _Plan(None, 0)
        plan, moved, up_seen = conn.plan, conn.moved, conn.up_seen
        conn.moved += len(data)
        if upstream:
            conn.up_seen += len(data)
            if conn.bodies is not None:
                conn.bodies.feed(data)
        if plan.kind == "flip":
            target = plan.at if conn.bodies is None else conn.bodies.target
            if not upstream or target is None or not up_seen <= target < up_seen + len(data):
                return data
            self._record(conn, "flip", target)
            flipped = bytearray(data)
            flipped[target - up_seen] ^= 0x01
            return bytes(flipped)
        if plan.kind is None or moved + len(data) <= plan.at:
            return data
        self._record(conn, plan.kind, plan.at)
        if plan.kind == "reset":
            for writer in conn.pair:
                _reset(writer)
            return None
        conn.stalled_until = time.monotonic() + plan.stall
        return data

    def _record(self, conn: _Conn, kind: str, at: int) -> None:
        """Count a fault and draw the connection's next one."""
        self.injected.append(Injected(kind, conn.number, at))
        conn.plan = self._plan(conn)
        if conn.bodies is not None:  # the next flip goes into a later body
            conn.bodies.after, conn.bodies.target = conn.plan.at, None


@dataclass
class _Conn:
    number: int
    pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter]
    plan: _Plan
    moved: int = 0  # bytes both ways
    up_seen: int = 0  # bytes from the client
    stalled_until: float = 0.0
    bodies: _HttpBodies | None = None


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()
