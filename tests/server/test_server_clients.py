"""Several clients at once: each gets only its own messages, routed by ROUTER identity."""

from __future__ import annotations

import threading

import pytest
from server_helpers import status

from shared_protocol import Accepted, Cancel, Progress, Result, Submit

pytestmark = pytest.mark.timeout(60)


def test_two_clients_get_only_their_own_messages(make_client):
    alice, bob = make_client(), make_client()
    # Same job ids on purpose: jobs are keyed by (client, id).
    alice.send(Submit(job="same", kind="sleep", params={"steps": 20, "seconds": 0.01}))
    assert alice.recv(5) == Accepted(job="same", position=0)
    bob.send(Submit(job="same", kind="echo", params={"who": "bob"}))
    alice.send(Submit(job="second", kind="echo", params={"who": "alice"}))
    got: dict[str, list] = {}

    def collect(name, c, jobs):
        msgs = []
        for job in jobs:
            msgs += list(c.job_messages(job, timeout=30))
        got[name] = msgs

    threads = [threading.Thread(target=collect, args=("alice", alice, ["same", "second"])),
               threading.Thread(target=collect, args=("bob", bob, ["same"]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)

    alice_results = [m for m in got["alice"] if isinstance(m, Result)]
    bob_results = [m for m in got["bob"] if isinstance(m, Result)]
    assert [r.kind for r in alice_results] == ["sleep", "echo"]
    assert alice_results[1].fields["params"] == {"who": "alice"}
    assert [r.fields["params"] for r in bob_results] == [{"who": "bob"}]
    # Bob never saw Alice's sleep progress; his echo waited behind her sleep in the one queue.
    assert not any(isinstance(m, Progress) and m.stage == "sleep" for m in got["bob"])
    assert any(isinstance(m, Progress) and m.stage == "sleep" for m in got["alice"])
    assert isinstance(got["bob"][0], Accepted) and got["bob"][0].position >= 1
    # Nothing else is waiting for either of them.
    assert alice.recv(0.2) is None and bob.recv(0.2) is None


def test_status_and_cancel_see_only_the_callers_jobs(make_client):
    alice, bob = make_client(), make_client()
    alice.send(Submit(job="mine", kind="sleep", params={"steps": 1000, "seconds": 0.01}))
    assert alice.recv(5) == Accepted(job="mine", position=0)
    assert isinstance(alice.recv(10), Progress)  # the worker has taken it (on a loaded machine, not at once)
    bob_view = status(bob)
    assert bob_view.running is None and bob_view.busy and bob_view.queue == []
    bob.send(Cancel(job="mine"))  # bob cannot cancel alice's job
    assert bob.recv(5).code == "unknown_job"
    assert status(alice).running == "mine"
    alice.send(Cancel(job="mine"))
    assert list(alice.job_messages("mine", timeout=10))[-1].code == "cancelled"
