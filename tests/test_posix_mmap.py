"""Shared writable mappings, as on the kernel overlayfs (the mmap item of the POSIX fidelity
issue).

* A file opened with O_DIRECT maps MAP_SHARED|PROT_WRITE and what is written through the
  mapping reaches the file. ovlfs answers such opens with FOPEN_DIRECT_IO, which the kernel's
  FUSE client refuses to map shared unless the daemon negotiated FUSE_DIRECT_IO_ALLOW_MMAP.
* The same for one name of a hard-linked upper file (ovlfs opens files with several names
  with direct_io, see set_open_flags in src/fuse/fuse_file.c): the data written through
  the mapping is read back through the other name once msync'd, and after munmap.
* st_mtime and st_ctime move when a mapping's writes are msync'd (MS_SYNC), for an upper
  file, a lower one (copied up by the open for write) and one whose mtime was set through
  the mount before (utimensat).

Each check runs on a kernel overlayfs and on an ovlfs mount over identical layers: by
default, without FUSE passthrough and with the writeback cache; the results must be the
same, and the kernel's what is expected.
"""
import errno
import mmap
import os
import time

import pytest

import helpers
import write_helpers as wh

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

PAGE = 4096
DATA = "o" * (2 * PAGE)
MAPPED = b"mapped!!"


def _file():
    return helpers.File(DATA, mode=0o644)


LOWER = {"l_odirect": _file(), "l_times": _file(), "l_touched": _file()}
UPPER = {"u_odirect": _file(), "u_times": _file(), "u_touched": _file(),
         "u_link_a": _file(), "u_link_b": helpers.Hardlink("u_link_a")}


def _errname(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def _map(fd):
    return mmap.mmap(fd, PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)


def _head(path):
    with open(path, "rb") as f:
        return f.read(len(MAPPED)).decode()


def odirect(mnt, name):
    """Maps a file opened O_RDWR|O_DIRECT shared and writable, writes, msyncs, unmaps."""
    fd = os.open(mnt / name, os.O_RDWR | os.O_DIRECT)
    try:
        m = _map(fd)
    except OSError as e:
        return {"mmap": _errname(e)}
    finally:
        os.close(fd)
    m[:len(MAPPED)] = MAPPED
    m.flush()
    m.close()
    return {"mmap": 0, "data": _head(mnt / name)}


def linked(mnt, name, other):
    """Writes through a shared mapping of one name; reads the other name after msync and
    after munmap."""
    fd = os.open(mnt / name, os.O_RDWR)
    try:
        m = _map(fd)
    except OSError as e:
        os.close(fd)
        return {"mmap": _errname(e)}
    try:
        m[:len(MAPPED)] = MAPPED
        m.flush()
        synced = _head(mnt / other)
        m[:4] = b"more"
        m.close()
    finally:
        os.close(fd)
    return {"mmap": 0, "after_msync": synced, "after_munmap": _head(mnt / other),
            "through_self": _head(mnt / name)}


def times(mnt, name, touch):
    """Whether st_mtime and st_ctime moved over a write through a mapping and its msync."""
    path = mnt / name
    if touch:
        os.utime(path, ns=(10**18, 10**18))
    fd = os.open(path, os.O_RDWR)  # copies a lower file up: the times are taken after it
    try:
        before = os.stat(path)
        time.sleep(0.05)  # beyond the timestamp granularity
        m = _map(fd)
        m[:len(MAPPED)] = MAPPED
        m.flush()
        synced = os.stat(path)
        m.close()
    finally:
        os.close(fd)
    closed = os.stat(path)
    return {"mtime_moved": synced.st_mtime_ns != before.st_mtime_ns,
            "ctime_moved": synced.st_ctime_ns != before.st_ctime_ns,
            "mtime_kept_at_close": closed.st_mtime_ns == synced.st_mtime_ns,
            "data": _head(path)}


CASES = {
    "u_odirect": lambda m: odirect(m, "u_odirect"),
    "l_odirect": lambda m: odirect(m, "l_odirect"),
    "u_link": lambda m: linked(m, "u_link_a", "u_link_b"),
    "u_times": lambda m: times(m, "u_times", False),
    "l_times": lambda m: times(m, "l_times", False),
    "u_touched": lambda m: times(m, "u_touched", True),
    "l_touched": lambda m: times(m, "l_touched", True),
}

EXPECTED = {
    "u_odirect": {"mmap": 0, "data": MAPPED.decode()},
    "l_odirect": {"mmap": 0, "data": MAPPED.decode()},
    "u_link": {"mmap": 0, "after_msync": MAPPED.decode(), "after_munmap": "moreed!!",
               "through_self": "moreed!!"},
}
MOVED = {"mtime_moved": True, "ctime_moved": True, "mtime_kept_at_close": True,
         "data": MAPPED.decode()}


@pytest.fixture(scope="module", params=[(), ("passthrough=0",), ("writeback=1",)],
                ids=["default", "no-passthrough", "writeback"])
def results(request):
    with wh.public_dir() as pub:
        k = helpers.build_layers(pub / "k", [LOWER], UPPER)
        o = helpers.build_layers(pub / "o", [LOWER], UPPER)
        out = {}
        with k.kernel(mnt=pub / "mk", extra_opts=wh.KERNEL_OPTS) as km, \
                o.ovlfs(mnt=pub / "mo", extra_opts=request.param) as om:
            for name, run in CASES.items():
                out[name] = (run(km), run(om))
        yield out


@pytest.mark.parametrize("name", list(CASES))
def test_mmap_as_on_kernel(results, name):
    kernel, ovlfs = results[name]
    assert ovlfs == kernel, f"{name}: kernel {kernel} ovlfs {ovlfs}"


@pytest.mark.parametrize("name", list(CASES))
def test_kernel_reference(results, name):
    """Guards the setup: the reference really mapped, wrote and moved the times."""
    assert results[name][0] == EXPECTED.get(name, MOVED)
