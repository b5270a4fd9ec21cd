"""SQL counts (``db/counters.py``): readings subtract, sum over processes and leave out
call sites, and a directory of per-process files reads back as their sum."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from dockyard.db.counters import SqlCounts, read_directory


def test_a_difference_keeps_only_the_sites_that_moved() -> None:
    before = SqlCounts(3, 1, Counter({"a | SELECT": 2, "a | (transaction)": 1, "b | UPDATE": 1}))
    after = SqlCounts(5, 2, Counter({"a | SELECT": 4, "a | (transaction)": 2, "b | UPDATE": 1}))
    spent = after - before
    assert (spent.statements, spent.transactions) == (2, 1)
    assert spent.sites == Counter({"a | SELECT": 2, "a | (transaction)": 1})


def test_without_leaves_out_statements_and_transactions_of_those_sites() -> None:
    spent = SqlCounts(
        5,
        2,
        Counter(
            {
                "x.cache:read:1 | SELECT": 2,
                "x.cache:read:1 | (transaction)": 1,
                "y.repo:write:9 | INSERT": 3,
                "y.repo:write:9 | (transaction)": 1,
            }
        ),
    )
    kept = spent.without(("x.cache:",))
    assert (kept.statements, kept.transactions) == (3, 1)
    assert set(kept.sites) == {"y.repo:write:9 | INSERT", "y.repo:write:9 | (transaction)"}
    assert "3 statements in 1 transactions" in kept.describe()


def test_a_directory_reads_as_the_sum_of_its_processes(tmp_path: Path) -> None:
    for pid, (statements, transactions) in {1: (4, 2), 2: (6, 1)}.items():
        data = SqlCounts(statements, transactions, Counter({"s | SELECT": statements}))
        (tmp_path / f"sql-{pid}.json").write_text(json.dumps(data.to_json()))
    (tmp_path / "sql-3.json").write_text("{not json")  # a process caught mid-write
    (tmp_path / "other.json").write_text("{}")
    total = read_directory(tmp_path)
    assert (total.statements, total.transactions) == (10, 3)
    assert total.sites == Counter({"s | SELECT": 10})
