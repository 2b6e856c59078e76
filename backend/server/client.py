"""A blocking DEALER client for tests, scripts and the CLI (the add-on runs the same protocol in its own thread).

    with Client("tcp://127.0.0.1:5557") as client:
        welcome = client.request(Hello(client="script"))
        client.send(Submit(job="j1", kind="render", params={"views": 4, "size": 64}, mesh=payload))
        for msg in client.job_messages("j1", timeout=60): ...

Imports zmq and shared_protocol only (no torch).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import zmq

from backend.server import curve
from shared_protocol import PROTOCOL_VERSION, Error, Message, Result, from_frames, to_frames


class Client:
    """One DEALER socket connected to a backend; not thread-safe (use it from one thread)."""

    def __init__(self, endpoint: str, curve_dir: Path | str | None = None, context: zmq.Context | None = None):
        self.endpoint = endpoint
        self._own_context = context is None
        self.context = context or zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.linger = 0
        try:
            if curve_dir is not None:
                curve.secure_client_socket(self.socket, curve_dir)
            self.socket.connect(endpoint)
        except BaseException:
            self.close()
            raise

    def send(self, msg: Message, protocol: int = PROTOCOL_VERSION) -> None:
        """Encodes and sends a message (raises ProtocolError for an invalid one)."""
        self.socket.send_multipart(to_frames(msg, protocol=protocol))

    def send_frames(self, frames: list[bytes]) -> None:
        """Sends raw frames as they are (tests use it to send malformed messages)."""
        self.socket.send_multipart(frames)

    def recv_frames(self, timeout: float = 5.0) -> list[bytes] | None:
        """The next raw message, or None after `timeout` seconds."""
        if not self.socket.poll(int(timeout * 1000)):
            return None
        return self.socket.recv_multipart()

    def recv(self, timeout: float = 5.0) -> Message | None:
        """The next decoded message, or None after `timeout` seconds (ProtocolError if it does not decode)."""
        frames = self.recv_frames(timeout)
        return None if frames is None else from_frames(frames)

    def request(self, msg: Message, timeout: float = 5.0) -> Message:
        """Sends `msg` and returns the next message; TimeoutError when none comes."""
        self.send(msg)
        reply = self.recv(timeout)
        if reply is None:
            raise TimeoutError(f"no reply to '{msg.TYPE}' from {self.endpoint} within {timeout}s; is the backend running?")
        return reply

    def job_messages(self, job: str, timeout: float = 60.0) -> Iterator[Message]:
        """Yields messages about `job` until its `result` or `error` (included); TimeoutError after `timeout`
        seconds in all. Messages about other jobs are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            msg = self.recv(max(left, 0.0)) if left > 0 else None
            if msg is None:
                raise TimeoutError(f"job {job!r} did not finish within {timeout}s")
            if getattr(msg, "job", None) != job:
                continue
            yield msg
            if isinstance(msg, (Result, Error)):
                return

    def close(self) -> None:
        self.socket.close(linger=0)
        if self._own_context:
            self.context.term()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
