"""Bytes in flight are bounded: each frame (libzmq's max message size, then a readable `too_large`), each client's
queued and running jobs, and all clients' together. Three clients pushing past the budgets are refused, nothing
refused is kept (the server's memory stays bounded), and the server keeps serving."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from server_helpers import start_server, stop_server

from backend.server.client import Client
from shared_protocol import Accepted, Cancel, Error, Result, Submit

pytestmark = pytest.mark.timeout(180)
MIB = 1 << 20
FRAME, PER_CLIENT, TOTAL = 2 * MIB, 4 * MIB, 6 * MIB


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def submit(client: Client, job: str, mib: float) -> object:
    """A long sleep job carrying `mib` MiB of blob: the first reply about it."""
    client.send(Submit(job=job, kind="sleep", params={"steps": 100_000, "seconds": 0.01},
                       blobs={"payload": bytes(int(mib * MIB))}))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        msg = client.recv(deadline - time.monotonic())
        if getattr(msg, "job", None) == job:
            return msg
    raise AssertionError(f"no reply about {job}")


def test_three_clients_over_the_budgets_are_refused_and_memory_stays_bounded(tmp_path):
    running = start_server(tmp_path, "--test-jobs", "--max-blob-bytes", str(FRAME), "--max-client-bytes",
                           str(PER_CLIENT), "--max-total-bytes", str(TOTAL), "--max-queue", "64")
    clients = [Client(running.endpoint) for _ in range(3)]
    try:
        before = rss_mib(running.process.pid)
        replies = {}
        for number, client in enumerate(clients):  # each client tries 8 jobs of 1.5 MiB: 36 MiB offered
            for round_ in range(8):
                job = f"c{number}-{round_}"
                replies[job] = submit(client, job, 1.5)
        accepted = [job for job, msg in replies.items() if isinstance(msg, Accepted)]
        refused = {job: msg for job, msg in replies.items() if isinstance(msg, Error)}
        per_client = {n: sum(job.startswith(f"c{n}-") for job in accepted) for n in range(3)}
        # 1.5 MiB (and a header) each: two fit a client's 4 MiB, three the 6 MiB total: the second client gets one
        # job before the total is reached, the third none.
        assert per_client == {0: 2, 1: 1, 2: 0}, per_client
        assert {msg.code for msg in refused.values()} == {"busy"}
        assert all(msg.hint for msg in refused.values())
        # One submit that could never fit a client's budget (3 frames of 1.9 MiB): too_large, with the flag.
        clients[2].send(Submit(job="huge", kind="sleep", params={"steps": 1},
                               blobs={f"b{i}": bytes(int(1.9 * MIB)) for i in range(3)}))
        huge = next(m for m in iter(lambda: clients[2].recv(20), None) if getattr(m, "job", None) == "huge")
        assert isinstance(huge, Error) and huge.code == "too_large" and "--max-client-bytes" in huge.hint
        after = rss_mib(running.process.pid)
        print(f"server RSS {before:.0f} MiB -> {after:.0f} MiB after 25 submits of ~1.5-5.7 MiB "
              f"({len(accepted)} held)")
        assert after - before < 48, (before, after)
        # Jobs end, their bytes are released, and the third client's job now runs to its end.
        for job in accepted:
            clients[int(job[1])].send(Cancel(job=job))
        time.sleep(1.0)
        clients[2].send(Submit(job="later", kind="sleep", params={"steps": 2, "seconds": 0.01},
                               blobs={"payload": bytes(int(1.5 * MIB))}))
        last = list(clients[2].job_messages("later", timeout=30))[-1]
        assert isinstance(last, Result), last
    finally:
        for client in clients:
            client.close()
        assert stop_server(running) == 0, running.stderr()
