"""The add-on's connection to a backend: one DEALER socket that lives in its own thread. No bpy.

Blender's main thread never waits on the network: it hands messages to `send()` (encoded and validated on
the caller's side, so a bad message fails at once with a readable error) and picks up what came back
from `events`, a plain queue that the add-on's timer drains. The thread opens with `hello`; no `welcome`
within `connect_timeout` seconds ends the connection with a `lost` event that says why. Once connected, a
backend silent for `ping_interval` seconds gets a `status` ping, idle or not; no answer within
`ping_timeout` seconds while jobs run (`watch`), or `idle_ping_timeout` while none do, is `lost` too. (A
DEALER socket reconnects silently, so a dead peer shows only as silence.)

    client = BackendClient("tcp://127.0.0.1:5557")
    client.start()
    client.send(Submit(...))
    for event in client.drain(): ...
    client.close()
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import zmq

from ..core.errors import AddonError
from ..core.protocol import Hello, ProtocolError, Status, Welcome, from_frames, to_frames
from . import curve


@dataclass
class ClientEvent:
    """One thing the client thread reports to the main thread."""

    kind: str
    """"message" (a decoded message from the backend), "lost" (the connection is over: `text` says why),
    "bad_reply" (a message that did not decode: `text`), "send_failed" (`text`)."""
    message: object = None
    """The decoded message for kind "message"."""
    text: str = ""
    """What happened, for the other kinds."""


class BackendClient:
    """One DEALER socket to `endpoint`, run by a daemon thread; thread-safe `send`, `drain` and `close`."""

    def __init__(self, endpoint: str, *, curve_dir: str | Path | None = None, client_name: str = "atelier-blender",
                 connect_timeout: float = 10.0, ping_interval: float = 0.5, ping_timeout: float = 15.0,
                 idle_ping_timeout: float = 3.0, poll_ms: int = 20):
        self.endpoint = endpoint
        self.curve_dir = curve_dir
        self.client_name = client_name
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.idle_ping_timeout = idle_ping_timeout
        self.poll_ms = poll_ms
        self.events: queue.Queue[ClientEvent] = queue.Queue()
        self.watch = False
        """True while jobs are active: a ping then waits `ping_timeout` (a busy backend answers late), else
        `idle_ping_timeout`."""
        self.connected = False
        """True once `welcome` arrived; False again after `lost`."""
        self._outbox: queue.Queue[list[bytes]] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="atelier-client", daemon=True)

    # -- main-thread side -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the thread still runs (False after `close()` or a `lost` event)."""
        return self._thread.is_alive()

    def send(self, msg) -> None:
        """Encodes `msg` (ProtocolError if it is invalid) and queues it for the thread; never blocks."""
        self._outbox.put(to_frames(msg))

    def send_frames(self, frames: list[bytes]) -> None:
        """Queues an already encoded message (`to_frames` output) for the thread; never blocks."""
        self._outbox.put(frames)

    def drain(self) -> list[ClientEvent]:
        """Every event that arrived since the last call, oldest first."""
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def close(self, timeout: float = 2.0) -> None:
        """Stops the thread and closes the socket (messages not yet sent are dropped)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # -- the thread -----------------------------------------------------------------------------------

    def _lost(self, text: str) -> None:
        self.connected = False
        self.events.put(ClientEvent("lost", text=text))

    def _run(self) -> None:
        context = zmq.Context()
        socket = context.socket(zmq.DEALER)
        socket.linger = 0
        try:
            try:
                if self.curve_dir:
                    curve.secure_client_socket(socket, self.curve_dir)
                socket.connect(self.endpoint)
            except AddonError as exc:
                self._lost(str(exc))
                return
            except zmq.ZMQError as exc:
                self._lost(f"cannot connect to {self.endpoint!r}: {exc} (an address looks like tcp://HOST:PORT)")
                return
            self._loop(socket)
            if self._flush(socket):
                socket.close(linger=500)  # a last message (shutdown, cancel) gets half a second to leave
        except Exception as exc:  # a bug here must still reach the panel, not vanish with the thread
            self._lost(f"the connection thread failed: {type(exc).__name__}: {exc}")
        finally:
            socket.close(linger=0)
            context.term()

    def _flush(self, socket: zmq.Socket) -> int:
        """Sends every queued message; returns how many went out."""
        sent = 0
        while True:
            try:
                frames = self._outbox.get_nowait()
            except queue.Empty:
                return sent
            try:
                socket.send_multipart(frames, zmq.NOBLOCK, copy=False)
                sent += 1
            except zmq.Again:
                self.events.put(ClientEvent("send_failed", text=f"a message could not be sent to {self.endpoint}: "
                                                                f"its queue is full"))

    def _loop(self, socket: zmq.Socket) -> None:
        started = last_recv = time.monotonic()
        ping_sent: float | None = None
        self._outbox.put(to_frames(Hello(client=self.client_name)))
        while not self._stop.is_set():
            self._flush(socket)
            if socket.poll(self.poll_ms):
                while True:
                    try:
                        frames = socket.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    last_recv, ping_sent = time.monotonic(), None
                    try:
                        msg = from_frames(frames)
                    except ProtocolError as exc:
                        self.events.put(ClientEvent("bad_reply", text=f"the backend sent a message the add-on "
                                                                       f"cannot read: {exc.message}"))
                        continue
                    if isinstance(msg, Welcome):
                        self.connected = True
                    self.events.put(ClientEvent("message", message=msg))
            now = time.monotonic()
            if not self.connected:
                if now - started > self.connect_timeout:
                    secure = " (with CurveZMQ: check that the key folder holds the pair `atelier keys` made " \
                             "for this backend)" if self.curve_dir else ""
                    self._lost(f"no answer from {self.endpoint} within {self.connect_timeout:g} s: is the backend "
                               f"running at that address?{secure}")
                    return
            elif ping_sent is not None:
                timeout = self.ping_timeout if self.watch else self.idle_ping_timeout
                if now - ping_sent > timeout:
                    self._lost(f"the backend at {self.endpoint} stopped answering (no reply to a status ping "
                               f"within {timeout:g} s)")
                    return
            elif now - last_recv > self.ping_interval:
                ping_sent = now
                try:
                    socket.send_multipart(to_frames(Status()), zmq.NOBLOCK)
                except zmq.Again:
                    pass  # the timeout above still catches a dead peer
