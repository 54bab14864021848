"""Giving memory back: what the process freed, returned to the system.

glibc keeps freed blocks for reuse rather than returning them, and a model's construction frees many
(each tensor of its random initialisation is made, then copied over). A process that then lives long
(the app) or loads more (a check) would hold them for nothing; malloc_trim hands them back. Elsewhere
(macOS, Windows, musl) the allocator decides, and this does nothing.
"""
import ctypes
import ctypes.util
import functools


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release_freed_memory() -> None:
    """Return the memory the process has freed to the system, where the allocator allows it."""
    if (libc := _libc()) is not None:
        libc.malloc_trim(0)
