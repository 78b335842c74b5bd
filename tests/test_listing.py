"""Directory reads without OPENDIR (the kernel's zero-message opendir): the daemon keeps a
directory's merged listing on its node between requests, and the offsets name the listing.
These check what a reader sees across requests, changes and seeks (src/engine/listing.c)."""
import ctypes
import ctypes.util
import os

from helpers import needs_fuse

pytestmark = needs_fuse

# Long names: a few dozen fit in one READDIRPLUS reply, so a listing takes many requests.
NAMES = [f"entry-{i:05d}-" + "x" * 40 for i in range(3000)]


def big_dir_layers(layers):
    return layers(upper={}, lowers=[{"d": {n: "" for n in NAMES}}])


def test_reader_keeps_its_listing_across_a_change(layers):
    ls = big_dir_layers(layers)
    with ls.ovlfs() as m:
        d = m / "d"
        it = os.scandir(d)
        first = [next(it).name for _ in range(300)]
        # Changes through the mount, then a second reader from the start: the first
        # reader continues in its own listing (the one it started), not in the new one.
        (d / "new-name").write_text("")
        os.unlink(d / NAMES[2000])
        os.rename(d / NAMES[2500], d / "renamed")
        now = set(NAMES) - {NAMES[2000], NAMES[2500]} | {"new-name", "renamed"}
        assert sorted(os.listdir(d)) == sorted(now)
        rest = [e.name for e in it]
        it.close()
        seen = first + rest
        assert len(seen) == len(set(seen)), "an entry came twice"
        stable = set(NAMES) - {NAMES[2000], NAMES[2500]}
        assert stable <= set(seen), "an unchanged entry was skipped"
        assert set(seen) <= set(NAMES) | now


class Dirent(ctypes.Structure):
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64),
                ("d_reclen", ctypes.c_ushort), ("d_type", ctypes.c_ubyte),
                ("d_name", ctypes.c_char * 256)]


def libc_dir_api():
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.opendir.restype = ctypes.c_void_p
    libc.opendir.argtypes = [ctypes.c_char_p]
    libc.readdir.restype = ctypes.POINTER(Dirent)
    libc.readdir.argtypes = [ctypes.c_void_p]
    libc.telldir.restype = ctypes.c_long
    libc.telldir.argtypes = [ctypes.c_void_p]
    libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]
    libc.closedir.argtypes = [ctypes.c_void_p]
    return libc


def read_names(libc, dirp, count=None):
    out = []
    while count is None or len(out) < count:
        ent = libc.readdir(dirp)
        if not ent:
            break
        out.append(ent.contents.d_name.decode())
    return out


def test_seekdir_returns_to_a_told_position(layers):
    ls = big_dir_layers(layers)
    libc = libc_dir_api()
    with ls.ovlfs() as m:
        dirp = libc.opendir(str(m / "d").encode())
        assert dirp
        try:
            read_names(libc, dirp, 1234)
            pos = libc.telldir(dirp)
            # a 32-bit program can hold it (d_off fits in 31 bits below a million entries)
            assert 0 < pos < 2**31
            after = read_names(libc, dirp, 100)
            rest = read_names(libc, dirp)  # to the end: the daemon lets go of the listing
            assert len(after) == 100 and rest
            libc.seekdir(dirp, pos)
            assert read_names(libc, dirp, 100) == after
        finally:
            libc.closedir(dirp)
        # every entry once, with . and ..
        dirp = libc.opendir(str(m / "d").encode())
        try:
            names = read_names(libc, dirp)
        finally:
            libc.closedir(dirp)
        assert sorted(names) == sorted(NAMES + [".", ".."])


def removed_open_directory(m):
    fd = os.open(m / "d", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.unlink(m / "d" / "a")
        os.unlink(m / "d" / "b")
        os.rmdir(m / "d")
        st = os.fstat(fd)
        return st.st_nlink, st.st_size, os.listdir(fd)
    finally:
        os.close(fd)


def test_removed_open_directory_as_on_the_kernel(layers):
    # The daemon is not told of directory opens, so it keeps the object of any removed
    # directory the kernel knows: fstat of an fd opened before shows what the layer shows.
    spec = dict(upper={"d": {"a": "1"}}, lowers=[{"d": {"b": "2"}}])
    with layers(**spec).kernel() as m:
        want = removed_open_directory(m)
    with layers(**spec).ovlfs() as m:
        assert removed_open_directory(m) == want
    assert want[2] == []
