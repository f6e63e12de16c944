"""Freed memory kept in the process for its next step (``memory.keep_freed_memory``): large blocks
come from the heap and stay there, unless ``ILLUME_RM_MALLOC=system``. The setting is process-wide,
so each case runs in its own interpreter and reads glibc's own account (``mallinfo2``) of the bytes
held in mmap'd blocks while a 64 MB tensor is alive."""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, ctypes.util, json, sys
import torch
from illume_rm.memory import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = MallInfo2
kept = keep_freed_memory()
before = libc.mallinfo2().hblkhd
x = torch.ones(16 * 1024 * 1024)  # 64 MB
held = libc.mallinfo2().hblkhd - before
del x
y = torch.ones(16 * 1024 * 1024)
print(json.dumps({"kept": kept, "mmapped": held, "sum": float(y.sum())}))
"""


def _glibc_with_mallinfo2() -> bool:
    try:
        return sys.platform.startswith("linux") and hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "mallinfo2")
    except OSError:
        return False


def _probe(**env) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], env={**os.environ, **env}, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="glibc's malloc (Linux) only")
def test_large_blocks_come_from_the_heap_once_kept():
    kept = _probe(ILLUME_RM_MALLOC="")
    assert kept["kept"] is True
    assert kept["mmapped"] < 1024 * 1024  # the 64 MB tensor is in the heap, not a block of its own
    assert kept["sum"] == 16 * 1024 * 1024


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="glibc's malloc (Linux) only")
def test_system_leaves_glibc_defaults():
    default = _probe(ILLUME_RM_MALLOC="system")
    assert default["kept"] is False
    assert default["mmapped"] >= 64 * 1024 * 1024  # glibc maps a block this large on its own


def test_cli_keeps_freed_memory(monkeypatch):
    """Every ``illume-rm`` command runs with it: the group's entry point calls it first."""
    from click.testing import CliRunner

    from illume_rm import cli, memory

    calls = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: calls.append(1) or True)
    result = CliRunner().invoke(cli.cli, ["--help"])
    assert result.exit_code == 0
    assert calls == [1]
