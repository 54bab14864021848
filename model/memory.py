"""Giving memory back: what the process freed, returned to the system.

glibc keeps freed blocks for reuse rather than returning them, and a model's construction frees many
(each tensor of its random initialisation is made, then copied over). A process that then lives long
(the app) or loads more (a check) would hold them for nothing; malloc_trim hands them back.

glibc also gives each thread that allocates a malloc arena of its own, up to eight per core, each
holding on to its freed blocks: a server whose request threads allocate tensors grows for weeks. A
long-lived process limits the arenas at its start, before its threads allocate (what the variable
MALLOC_ARENA_MAX does, set by the process itself). Elsewhere (macOS, Windows, musl) the allocator
decides, and these do nothing.
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


M_ARENA_MAX = -8  # mallopt's parameter number for the arena limit (glibc's malloc.h)
ARENAS = 2  # the main arena and one for every other thread: enough for a model on two cores


def limit_malloc_arenas(arenas: int = ARENAS) -> None:
    """At most `arenas` malloc arenas from now on; call it before the threads that allocate start."""
    if (libc := _libc()) is not None and hasattr(libc, "mallopt"):
        libc.mallopt(M_ARENA_MAX, arenas)


def release_freed_memory() -> None:
    """Return the memory the process has freed to the system, where the allocator allows it."""
    if (libc := _libc()) is not None:
        libc.malloc_trim(0)
