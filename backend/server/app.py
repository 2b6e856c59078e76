"""The backend server: one ROUTER socket, a main loop that owns it, a job queue and one compute worker.

Main loop (the only thread that touches the ROUTER): polls the ROUTER and an inproc PULL socket fed by
the worker; answers hello/status/cancel/release/shutdown at once; queues submits; forwards the worker's
progress/result/error frames to the right client by ROUTER identity. A malformed message gets an
`error` reply and the loop goes on.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

import zmq

import backend.server.registrations  # noqa: F401  (registers the models' release hook and lister)
from backend import __version__
from backend.devices import resolve_device
from backend.errors import AtelierError
from backend.server import curve
from backend.server.config import ServerConfig
from backend.server.context import JobHandler
from backend.server.hooks import models_present, release_memory
from backend.server.jobqueue import Job, JobQueue
from backend.server.paths import PathPolicy
from backend.render.rasterizer import renderer_name
from backend.server.jobs import JOB_HANDLERS, diagnostic_handlers
from backend.server.watch import process_alive
from backend.server.worker import Worker, error_message
from shared_protocol import (
    PROTOCOL_VERSION, Accepted, Cancel, Hello, Message, ProtocolError, Release, Shutdown, Status, Submit, Welcome,
    from_frames, to_frames,
)
from shared_protocol.limits import MAX_HEADER_BYTES

log = logging.getLogger("backend.server")

_RCVHWM = 4
"""Whole messages libzmq queues per peer before it stops reading that peer's socket (its default is 1000):
what a flooding client can park in the server beyond the in-flight budgets is this many messages."""

_BATCH = 64
"""Messages handled per socket per loop turn, so neither side starves the other."""


class Server:
    """Build, `start()`, `run()` until stopped, `close()`; or call `serve(config)`."""

    def __init__(self, config: ServerConfig, handlers: dict[str, JobHandler] | None = None):
        self.config = config
        self.handlers = dict(JOB_HANDLERS if handlers is None else handlers)
        if config.test_jobs:
            for name, handler in diagnostic_handlers().items():
                if name in self.handlers:
                    raise ValueError(f"job kind {name!r} is registered twice")
                self.handlers[name] = handler
        self.device = resolve_device(config.device)
        self.queue = JobQueue(config.max_queue, config.max_client_bytes, config.max_total_bytes)
        self.paths = PathPolicy.build(tuple(config.data_roots), remote=config.curve_dir is not None)
        self.endpoint: str | None = None
        self._stop = threading.Event()
        self._incoming_bytes = 0
        self._answered: set[tuple[bytes, str]] = set()
        """(client, job) of running jobs whose cancel was answered: the worker's later messages about them drop."""
        self._context: zmq.Context | None = None
        self._router: zmq.Socket | None = None
        self._events: zmq.Socket | None = None
        self._auth = None
        self._worker: Worker | None = None
        self._dispatch: dict[type, Callable[[bytes, Message], None]] = {
            Hello: self._on_hello, Submit: self._on_submit, Cancel: self._on_cancel, Status: self._on_status,
            Release: self._on_release, Shutdown: self._on_shutdown,
        }

    # -- life cycle -----------------------------------------------------------------------------------

    def start(self) -> str:
        """Binds the sockets and starts the worker; returns the bound endpoint (with the real port)."""
        cfg = self.config
        self._context = zmq.Context()
        router = self._context.socket(zmq.ROUTER)
        router.linger = 0
        # Frames far over the limit are cut off by libzmq (the peer is disconnected) before they fill
        # memory; frames up to twice the limit still arrive and get a readable `too_large` reply.
        router.maxmsgsize = 2 * max(cfg.max_blob_bytes, MAX_HEADER_BYTES)
        router.rcvhwm = _RCVHWM
        if cfg.curve_dir is not None:
            self._auth = curve.start_authenticator(self._context, cfg.curve_dir)
            curve.secure_server_socket(router, cfg.curve_dir)
        elif not _is_loopback(cfg.bind):
            log.warning("serving %s without CurveZMQ: anyone who can reach it can use this backend "
                        "(use --curve-dir for remote use)", cfg.bind)
        try:
            router.bind(cfg.bind)
        except zmq.ZMQError as exc:
            router.close()
            self._close_context()
            raise AtelierError(f"cannot listen on {cfg.bind}: {exc}",
                               hint="another backend may be using this port: pick another --bind port, or "
                                    "tcp://127.0.0.1:* for a free one", code="bind_failed") from exc
        self._router = router
        self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        self._events = self._context.socket(zmq.PULL)
        self._events.linger = 0
        events_endpoint = f"inproc://atelier-events-{id(self)}"
        self._events.bind(events_endpoint)
        self._worker = Worker(self.queue, self.handlers, self.device, self._context, events_endpoint,
                              cfg.log_path, cfg.progress_rate, cfg.linger_ms, self.paths)
        self._worker.start()
        log.info("listening on %s (device %s, protocol %d, job kinds %s, log %s)", self.endpoint, self.device,
                 PROTOCOL_VERSION, ", ".join(sorted(self.handlers)), cfg.log_path)
        return self.endpoint

    def stop(self) -> None:
        """Asks the main loop to finish (thread- and signal-safe); `run()` returns within `poll_ms`."""
        self._stop.set()

    def run(self) -> None:
        """The main loop; returns after `stop()` or a `shutdown` message."""
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._events, zmq.POLLIN)
        next_watch = time.monotonic() + self.config.watch_interval_s
        while not self._stop.is_set():
            ready = dict(poller.poll(self.config.poll_ms))
            if self.config.watch_pid is not None and time.monotonic() >= next_watch:
                next_watch = time.monotonic() + self.config.watch_interval_s
                if not process_alive(self.config.watch_pid):
                    log.warning("the watched process %d is gone: stopping", self.config.watch_pid)
                    self.stop()
                    break
            if self._events in ready:
                self._forward_events()
            if self._router in ready:
                for _ in range(_BATCH):
                    try:
                        frames = self._router.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._on_frames(frames)
                    if self._stop.is_set():
                        break

    def close(self) -> None:
        """Cancels jobs, joins the worker, flushes the last replies and closes the sockets."""
        if self._context is None:
            return
        for job in self.queue.close():
            self._reply(job.client, error_message("shutdown", f"the backend shut down before job {job.id!r} started",
                                                  "start the backend again and resubmit", job=job.id))
        deadline = time.monotonic() + self.config.join_timeout_s
        while self._worker is not None and self._worker.is_alive() and time.monotonic() < deadline:
            # Keep forwarding while waiting, so the worker never blocks on a full pipe.
            if self._events.poll(50):
                self._forward_events()
        stuck = self._worker is not None and self._worker.is_alive()
        self._forward_events()
        self._router.close(linger=self.config.linger_ms)
        self._events.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
        if stuck:
            log.warning("the worker did not stop within %.0fs; leaving it behind", self.config.join_timeout_s)
        else:
            self._close_context()
        self._context = None
        log.info("stopped")

    def _close_context(self) -> None:
        if self._context is not None:
            self._context.term()

    # -- messages -------------------------------------------------------------------------------------

    def _forward_events(self) -> None:
        while True:
            try:
                frames = self._events.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if self._answered:
                header = json.loads(frames[1])
                key = (frames[0], header.get("job"))
                if key in self._answered:
                    if header.get("type") in ("result", "error"):
                        self._answered.discard(key)
                    continue
            self._router.send_multipart(frames)

    def _reply(self, client: bytes, msg: Message) -> None:
        self._router.send_multipart([client, *to_frames(msg)])

    def _on_frames(self, frames: list[bytes]) -> None:
        if len(frames) < 2:
            log.warning("dropped a message with no frames after the identity")
            return
        client = frames[0]
        try:
            msg = from_frames(frames[1:], max_blob_bytes=self.config.max_blob_bytes)
        except ProtocolError as exc:
            log.warning("bad message from %s: %s", client.hex(), exc.message)
            self._reply(client, self._protocol_error(exc))
            return
        handler = self._dispatch.get(type(msg))
        if handler is None:
            self._reply(client, error_message(
                "bad_message", f"a client cannot send a '{msg.TYPE}' message; the backend sends those",
                f"send one of: {', '.join(m.TYPE for m in self._dispatch)}", job=getattr(msg, "job", None)))
            return
        # What a submit holds while its job is queued or running, for the in-flight budgets (`_on_submit`).
        self._incoming_bytes = sum(len(frame) for frame in frames[1:])
        try:
            handler(client, msg)
        except Exception as exc:  # a bug answering one message must not stop the server for everyone
            log.exception("handling '%s' from %s failed", msg.TYPE, client.hex())
            self._reply(client, error_message(
                "internal", f"the backend failed to answer '{msg.TYPE}': {type(exc).__name__}: {exc}",
                f"this is a backend bug; the traceback is in the log at {self.config.log_path}",
                job=getattr(msg, "job", None)))

    @staticmethod
    def _protocol_error(exc: ProtocolError):
        if exc.code == "protocol_mismatch":
            theirs = exc.peer_protocol
            newer = "the add-on is newer: update the Atelier backend" if theirs > PROTOCOL_VERSION else \
                "the backend is newer: update the Blender add-on"
            return error_message("protocol_mismatch",
                                 f"the client speaks Atelier protocol {theirs} but this backend speaks protocol "
                                 f"{PROTOCOL_VERSION}", f"{newer} so both are the same release", job=exc.job)
        return error_message(exc.code, exc.message, exc.hint, job=exc.job)

    def _on_hello(self, client: bytes, msg: Hello) -> None:
        log.info("hello from %s (%s)", client.hex(), msg.client or "unnamed client")
        self._reply(client, Welcome(
            server=__version__, device=str(self.device), renderer=renderer_name(self.device),
            job_kinds=sorted(self.handlers), models=models_present(), log_path=str(self.config.log_path),
            max_blob_bytes=self.config.max_blob_bytes))

    def _on_submit(self, client: bytes, msg: Submit) -> None:
        if msg.kind not in self.handlers:
            self._reply(client, error_message(
                "unknown_kind", f"this backend has no job kind {msg.kind!r}",
                f"it offers: {', '.join(sorted(self.handlers))}; if the add-on is newer, update the backend",
                job=msg.job))
            return
        try:
            position = self.queue.put(Job(client=client, submit=msg, nbytes=self._incoming_bytes))
        except AtelierError as exc:
            self._reply(client, error_message(exc.code, exc.message, exc.hint, job=msg.job))
            return
        log.info("job %s (%s) from %s queued at position %d", msg.job, msg.kind, client.hex(), position)
        self._reply(client, Accepted(job=msg.job, position=position))

    def _on_cancel(self, client: bytes, msg: Cancel) -> None:
        state = self.queue.cancel(client, msg.job)
        log.info("cancel %s from %s: %s", msg.job, client.hex(), state or "no such job")
        if state == "queued":
            self._reply(client, error_message("cancelled", f"job {msg.job!r} was cancelled before it started",
                                              job=msg.job))
        elif state is None:
            self._reply(client, error_message("unknown_job", f"no job {msg.job!r} is queued or running for this client",
                                              "it may have finished already", job=msg.job))
        elif state == "running":
            # Answered now, not at the job's next step: a model load or one long step may take seconds. Whatever
            # the worker still sends about this job is dropped (`_forward_events`); the next job starts once the
            # worker reaches a cancel check.
            self._answered.add((client, msg.job))
            self._reply(client, error_message("cancelled", f"job {msg.job!r} was cancelled", job=msg.job))

    def _on_status(self, client: bytes, msg: Status) -> None:
        mine, running, busy, queued_total = self.queue.snapshot(client)
        if (client, running) in self._answered:
            running = None  # cancelled and answered; the worker is still unwinding it (busy stays true)
        self._reply(client, Status(queue=mine, running=running, busy=busy, queued_total=queued_total,
                                   device=str(self.device)))

    def _on_release(self, client: bytes, msg: Release) -> None:
        done = release_memory(self.device)
        log.info("release from %s: ran hooks %s", client.hex(), done)
        self._reply(client, Release())

    def _on_shutdown(self, client: bytes, msg: Shutdown) -> None:
        log.info("shutdown requested by %s", client.hex())
        self._reply(client, Shutdown())
        self.stop()


def _is_loopback(endpoint: str) -> bool:
    return endpoint.startswith(("ipc://", "inproc://", "tcp://127.", "tcp://localhost:", "tcp://[::1]:"))


def setup_logging(config: ServerConfig) -> logging.Handler:
    """Sends the `backend` loggers to the log file; returns the handler (remove it to undo)."""
    config.log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(config.log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
    logger = logging.getLogger("backend")
    logger.addHandler(handler)
    logger.setLevel(config.log_level.upper())
    return handler


def serve(config: ServerConfig, ready: Callable[[dict], None] | None = None) -> int:
    """Runs the backend until a `shutdown` message, SIGINT or SIGTERM; returns the exit code (0).

    Once listening it calls `ready(info)` (default: prints one JSON line to stdout) with
    {"event": "ready", "endpoint", "log", "pid", "protocol", "device"}; a parent process (the add-on,
    the tests) reads it to learn the real port when binding `tcp://127.0.0.1:*`.
    Raises AtelierError when it cannot start (port taken, keys missing, device unavailable).
    """
    handler = setup_logging(config)
    if config.blender:
        os.environ["ATELIER_BLENDER"] = config.blender  # what `find_blender` takes when a job names none
    if config.ray:
        os.environ["ATELIER_INDEX_RAY"] = config.ray  # what the index job shards over (`handlers/index.py`)
    previous: dict[int, object] = {}
    try:
        server = Server(config)
        endpoint = server.start()
        try:
            if threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGINT, signal.SIGTERM):
                    previous[sig] = signal.signal(sig, lambda *_: server.stop())
            info = {"event": "ready", "endpoint": endpoint, "log": str(config.log_path), "pid": os.getpid(),
                    "protocol": PROTOCOL_VERSION, "device": str(server.device)}
            (ready or _print_ready)(info)
            server.run()
        finally:
            server.close()
            for sig, old in previous.items():
                signal.signal(sig, old)
    finally:
        logging.getLogger("backend").removeHandler(handler)
        handler.close()
    return 0


def _print_ready(info: dict) -> None:
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()
