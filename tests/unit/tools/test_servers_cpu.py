"""CPU time read from /proc: a process's, and that of its threads of a name (the benchmark's JIT line)."""

from __future__ import annotations

import os
from pathlib import Path

from tools.dev.servers import cpu_seconds, thread_cpu_seconds


def _spin() -> None:
    total = 0
    for number in range(2_000_000):
        total += number * number
    assert total > 0


def test_the_threads_of_a_name_and_none_of_another() -> None:
    _spin()
    pid = os.getpid()
    main = Path(f"/proc/{pid}/comm").read_text().strip()
    assert 0 < thread_cpu_seconds(pid, main) <= cpu_seconds(pid)
    assert thread_cpu_seconds(pid, "no thread is named this") == 0
