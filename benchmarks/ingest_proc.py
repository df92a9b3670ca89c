"""The /proc side of ``benchmarks/ingest.py``: CPU and peak RSS of the server and PostgreSQL.

Sampled once a second from a thread, since the server's children may exit
before the end of a run.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import msgspec

TICK = os.sysconf("SC_CLK_TCK")


class Process(msgspec.Struct):
    pid: int
    role: str
    cpu_ticks: int = 0  # utime + stime, last seen
    peak_kib: int = 0  # VmHWM, last seen


def role_of(cmdline: str) -> str:
    if "api.cli serve" in cmdline:
        return "serve"
    if "projections run" in cmdline:
        return "projections"
    if "spawn_main" in cmdline:
        return "API worker"
    if "resource_tracker" in cmdline:
        return "resource tracker"
    return cmdline[:60] or "?"


def stat_of(pid: int) -> tuple[int, int]:
    """(ppid, utime + stime in ticks) from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def cmdline_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def peak_kib_of(pid: int) -> int:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next((int(line.split()[1]) for line in lines if line.startswith("VmHWM:")), 0)


class Sampler:
    """Once a second: each process of the server's tree (CPU, peak RSS, role), and
    PostgreSQL's processes but the backends of other databases (CPU only).

    A process keeps its last sample after it exits; one born and gone between two
    samples is missed, so PostgreSQL's figure (short-lived backends) is approximate."""

    def __init__(self, server_pid: int, postmaster_pid: int, dbname: str) -> None:
        self.server_pid, self.postmaster_pid, self.dbname = server_pid, postmaster_pid, dbname
        self.server: dict[int, Process] = {}
        self.postgres: dict[int, Process] = {}
        self.lock, self.stopping = threading.Lock(), threading.Event()
        self.thread = threading.Thread(target=self.run, name="sampler", daemon=True)

    def run(self) -> None:
        while not self.stopping.wait(1.0):
            self.sample()

    def sample(self) -> None:
        with self.lock:
            stats: dict[int, tuple[int, int]] = {}
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        stats[int(entry.name)] = stat_of(int(entry.name))
                    except (OSError, IndexError, ValueError):  # gone meanwhile
                        continue
            tree, todo = set[int](), [self.server_pid]
            while todo:  # the server and its descendants
                pid = todo.pop()
                tree.add(pid)
                todo += [child for child, (ppid, _) in stats.items() if ppid == pid]
            for pid, (ppid, ticks) in stats.items():
                try:
                    if pid in tree:
                        self.note(self.server, pid, ticks, peak_kib_of(pid))
                    elif ppid == self.postmaster_pid and self.ours(pid):
                        self.note(self.postgres, pid, ticks, 0)
                except OSError:
                    continue

    def note(self, table: dict[int, Process], pid: int, ticks: int, peak_kib: int) -> None:
        if pid not in table:
            table[pid] = Process(pid, role_of(cmdline_of(pid)))
        table[pid].cpu_ticks, table[pid].peak_kib = ticks, max(peak_kib, table[pid].peak_kib)

    def ours(self, pid: int) -> bool:
        title = cmdline_of(pid)
        is_client = "(" in title or "[local]" in title
        return not is_client or f" {self.dbname} " in title

    def cpu_marks(self) -> tuple[dict[int, int], dict[int, int]]:
        """Ticks per process now (server, PostgreSQL): the start of a window."""
        self.sample()
        with self.lock:
            server = {pid: p.cpu_ticks for pid, p in self.server.items()}
            return server, {pid: p.cpu_ticks for pid, p in self.postgres.items()}

    def cpu_seconds(self, marks: tuple[dict[int, int], dict[int, int]]) -> tuple[float, float]:
        """CPU seconds (server, PostgreSQL) used since ``marks``."""
        self.sample()
        with self.lock:
            server = sum(p.cpu_ticks - marks[0].get(pid, 0) for pid, p in self.server.items())
            postgres = sum(p.cpu_ticks - marks[1].get(pid, 0) for pid, p in self.postgres.items())
        return server / TICK, postgres / TICK

    def api_workers(self, marks: tuple[dict[int, int], dict[int, int]]) -> list[float]:
        """Each API worker's CPU seconds since ``marks``, most first: how evenly the
        kernel spread the client's connections over them."""
        self.sample()
        with self.lock:
            used = [
                (p.cpu_ticks - marks[0].get(pid, 0)) / TICK
                for pid, p in self.server.items()
                if p.role == "API worker"
            ]
        return sorted(used, reverse=True)

    def server_by_role(self, marks: tuple[dict[int, int], dict[int, int]]) -> dict[str, float]:
        """The server's CPU seconds since ``marks`` per role (API workers summed)."""
        self.sample()
        split: dict[str, float] = {}
        with self.lock:
            for pid, p in self.server.items():
                used = (p.cpu_ticks - marks[0].get(pid, 0)) / TICK
                split[p.role] = split.get(p.role, 0.0) + used
        return split
