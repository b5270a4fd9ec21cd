"""Upload claim holders: which claims a dead process left (registry/claims.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dockyard.registry import claims


def _parts() -> list[str]:
    return claims.this_process().split("/")


def test_this_process_holds_its_claims() -> None:
    assert not claims.holder_is_gone(claims.this_process())


def test_a_finished_process_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    place, _, started = _parts()
    assert claims.holder_is_gone(f"{place}/{child.pid}/{started}")


def test_a_reused_pid_does_not_keep_a_dead_holder() -> None:
    place, pid, started = _parts()
    # this pid with another start time: an earlier process that had the same pid
    assert claims.holder_is_gone(f"{place}/{pid}/{started}0")


def test_claims_taken_where_pids_cannot_be_checked_wait_for_their_lease() -> None:
    """Another machine, this one before a reboot, another container with the same host
    name: another place, whose pids cannot be checked from here."""
    _, _, started = _parts()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not claims.holder_is_gone(f"0123456789abcdef/{dead.pid}/{started}")


def test_the_place_depends_on_host_boot_and_pid_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    here = claims._place()
    claims._place.cache_clear()
    monkeypatch.setattr(claims, "_pid_namespace", lambda: "pid:[1]")
    try:
        assert claims._place() != here
    finally:
        claims._place.cache_clear()
    assert len(claims.this_process()) < 64


def test_unknown_holders_wait_for_their_lease() -> None:
    assert not claims.holder_is_gone(None)
    assert not claims.holder_is_gone("")
    assert not claims.holder_is_gone("not a holder id")
