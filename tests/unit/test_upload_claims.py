"""Upload claim holders: which claims a dead process left (registry/claims.py)."""

from __future__ import annotations

import subprocess
import sys

from dockyard.registry import claims


def _parts() -> list[str]:
    return claims.this_process().split("/")


def test_this_process_holds_its_claims() -> None:
    assert not claims.holder_is_gone(claims.this_process())


def test_a_finished_process_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    host, boot, _, started = _parts()
    assert claims.holder_is_gone(f"{host}/{boot}/{child.pid}/{started}")


def test_a_reused_pid_does_not_keep_a_dead_holder() -> None:
    host, boot, pid, started = _parts()
    # this pid with another start time: an earlier process that had the same pid
    assert claims.holder_is_gone(f"{host}/{boot}/{pid}/{started}0")


def test_a_reboot_ends_every_claim_of_the_host() -> None:
    host, _, pid, started = _parts()
    assert claims.holder_is_gone(f"{host}/another-boot/{pid}/{started}")


def test_claims_of_other_nodes_and_unknown_holders_wait_for_their_lease() -> None:
    _, boot, _, started = _parts()
    assert not claims.holder_is_gone(f"another-node/{boot}/1/{started}")
    assert not claims.holder_is_gone(None)
    assert not claims.holder_is_gone("")
    assert not claims.holder_is_gone("not a holder id")
