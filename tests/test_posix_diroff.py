"""Directory offsets used on another open of the same directory (telldir on one fd, seekdir
on another), on the kernel overlayfs and on ovlfs over identical layers.

The kernel hands out, for a merged directory, positions in the directory's shared listing
cache (fs/overlayfs/readdir.c: ovl_cache_get, ovl_seek_cursor) and, for a directory that needs
no merge, the real filesystem's offsets: either way an offset from one open resumes in
another at the entry after the one it was taken at, while the directory does not change.
ovlfs's offsets name the listing by a hash of its names (src/engine/listing.c), so any open
resumes in it, or in a fresh merge of the unchanged directory when the listing was let go.

Orders differ between the two (doc/semantics.md rule 20), so what is compared is what fd2
gives from the offset: the very names fd1 gave after it, to the end, and with the names
before it the whole listing.
"""
import ctypes
import os

import pytest

import helpers
import write_helpers as wh
from test_listing import libc_dir_api, read_names

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

# Long names: some dozens fill one READDIR reply, so BIG takes many requests.
SMALL = [f"s{i:03d}" for i in range(24)]
BIG = [f"b{i:04d}-" + "x" * 40 for i in range(600)]


def spec(names):
    upper = {"merged": {n: "" for n in names[::2]}, "upper": {n: "" for n in names}}
    lower = {"merged": {n: "" for n in names[1::2]}, "lower": {n: "" for n in names}}
    # a name in both layers, and a lower name hidden by a whiteout
    upper["merged"]["both"] = "u"
    lower["merged"]["both"] = "l"
    upper["merged"]["gone"] = helpers.Whiteout()
    lower["merged"]["gone"] = ""
    return dict(upper=upper, lowers=[lower])


def libc_resume(path, k, close_first):
    """fd1 reads k entries and tells; fd2 seeks there. (before, after on fd1, after on fd2)"""
    libc = libc_dir_api()
    d1, d2 = libc.opendir(bytes(path)), libc.opendir(bytes(path))
    assert d1 and d2
    try:
        before = read_names(libc, d1, k)
        pos = libc.telldir(d1)
        after1 = read_names(libc, d1)
        if close_first:
            libc.closedir(d1)
            d1 = None
        libc.seekdir(d2, pos)
        after2 = read_names(libc, d2)
    finally:
        if d1:
            libc.closedir(d1)
        libc.closedir(d2)
    return before, after1, after2


def getdents_resume(path, calls, close_first):
    """The same through getdents64 with a small buffer and lseek to the last d_off."""
    fd1 = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    fd2 = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        before = []
        for _ in range(calls):
            before += wh.getdents(fd1, 200)
        pos = os.lseek(fd1, 0, os.SEEK_CUR)  # the last entry's d_off
        after1 = drain(fd1)
        if close_first:
            os.close(fd1)
            fd1 = -1
        assert os.lseek(fd2, pos, os.SEEK_SET) == pos
        after2 = drain(fd2)
    finally:
        if fd1 >= 0:
            os.close(fd1)
        os.close(fd2)
    return before, after1, after2


def drain(fd):
    out = []
    while True:
        got = wh.getdents(fd, 200)
        if not got:
            return out
        out += got


def outcome(m, dirname, how, at, close_first):
    before, after1, after2 = how(m / dirname, at, close_first)
    assert before and after1, "the offset must be in the middle of the listing"
    return {"fd2 resumes where fd1 did": after2 == after1,
            "fd2 after the offset": after2 if after2 != after1 else "as fd1",
            "whole listing": sorted(before + after2)}


CASES = [(names, d, how, at)
         for names, points in ((SMALL, {"libc": (1, 2, 9), "getdents": (1, 3)}),
                               (BIG, {"libc": (5, 70, 400), "getdents": (1, 30, 100)}))
         for d in ("merged", "upper", "lower")
         for how, ats in (("libc", points["libc"]), ("getdents", points["getdents"]))
         for at in ats]


@pytest.mark.parametrize("close_first", [False, True], ids=["fd1-open", "fd1-closed"])
@pytest.mark.parametrize("names,dirname,how,at", CASES,
                         ids=[f"{len(c[0])}-{c[1]}-{c[2]}-{c[3]}" for c in CASES])
def test_offset_from_another_open(layers, names, dirname, how, at, close_first):
    fn = libc_resume if how == "libc" else getdents_resume
    s = spec(names)
    with layers(**s).kernel(extra_opts=wh.KERNEL_OPTS) as m:
        want = outcome(m, dirname, fn, at, close_first)
    with layers(**s).ovlfs() as m:
        got = outcome(m, dirname, fn, at, close_first)
    assert want["fd2 resumes where fd1 did"], want
    assert got == want


def test_offset_after_a_change_resumes_after_its_entry(layers):
    # Not differential: for a merged directory the kernel resumes at the same position of
    # the new listing, which skips an entry when one before the offset went away. ovlfs
    # resumes in the listing the offset names (an open reading across a change keeps its
    # listing, and READDIR does not say which open asks): after the entry it was taken at.
    s = spec(BIG)
    libc = libc_dir_api()
    with layers(**s).ovlfs() as m:
        d = m / "merged"
        d1 = libc.opendir(bytes(d))
        assert d1
        try:
            before = read_names(libc, d1, 300)
            pos = libc.telldir(d1)
            after1 = read_names(libc, d1)
        finally:
            libc.closedir(d1)
        removed = [n for n in before if n.startswith("b")][-3:]
        for n in removed:
            os.unlink(d / n)
        (d / "created").write_text("")
        d2 = libc.opendir(bytes(d))
        assert d2
        try:
            libc.seekdir(d2, pos)
            after2 = read_names(libc, d2)
        finally:
            libc.closedir(d2)
        assert after2 == after1, "not the entries after the told one"
        now = set(os.listdir(d))
        assert set(removed).isdisjoint(now) and "created" in now
