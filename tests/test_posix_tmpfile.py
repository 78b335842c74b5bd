"""O_TMPFILE: ovlfs against the kernel overlayfs, side by side.

open(dir, O_TMPFILE) makes an unnamed file in dir (the kernel overlayfs since Linux 6.6:
ovl_tmpfile, in the upper directory, a lower one copied up first); linkat gives it a
name, unless it was opened with O_EXCL (ENOENT). The kernel sends FUSE_TMPFILE, which
libfuse 3.14 does not know; before ovlfs answered it, every such open failed with
EOPNOTSUPP. Root and an unprivileged user, with umask 022, open tmpfiles in lower and
upper directories (one with a default ACL), write, read, fstat, fchmod and link them (by
AT_EMPTY_PATH and by /proc/self/fd), close one unlinked, and try to link an O_EXCL one;
both mounts must give the same results, and their upper layers must end the same, with
nothing left in the work directory.
"""
import json
import os
import struct
import subprocess

import pytest

import helpers
import write_helpers as wh

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

USER = 1000


def _acl(*entries):
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in entries)


NO_ID = 0xFFFFFFFF
# group may write, others read (USER_OBJ, GROUP_OBJ, OTHER)
DEF_GROUP_RWX = _acl((0x01, 7, NO_ID), (0x04, 7, NO_ID), (0x20, 5, NO_ID))

LOWER = {
    "lower_d": helpers.Dir(mode=0o777, children={"old": "old\n"}),
    "lower_acl": helpers.Dir(mode=0o777, xattrs={"system.posix_acl_default": DEF_GROUP_RWX}),
    "lower_user": helpers.Dir(mode=0o755, uid=USER, gid=USER),
    "lower_deep": helpers.Dir(mode=0o755, children={"sub": helpers.Dir(mode=0o777)}),
    "lower_file": "not a directory\n",
    "both_d": helpers.Dir(mode=0o777, children={"below": "below\n"}),
}
UPPER = {
    "upper_d": helpers.Dir(mode=0o777, children={"up": "up\n"}),
    "both_d": helpers.Dir(mode=0o777, children={"above": "above\n"}),
}
DIRS = ["lower_d", "lower_acl", "lower_deep/sub", "upper_d", "both_d"]
USER_DIRS = DIRS + ["lower_user"]

# The child: umask 022, then the tmpfile steps in each directory; results by step name.
CHILD = r"""
import ctypes, errno, json, os, stat, sys
root, tag, dirs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
os.umask(0o022)
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, AT_SYMLINK_FOLLOW, AT_EMPTY_PATH = -100, 0x400, 0x1000
out = {}

def err(e):
    return errno.errorcode.get(e.errno, str(e.errno))

def step(name, fn):
    try:
        out[name] = fn()
    except OSError as e:
        out[name] = err(e)

def st(s):
    return {"mode": stat.filemode(s.st_mode), "nlink": s.st_nlink, "size": s.st_size,
            "uid": s.st_uid, "gid": s.st_gid}

def linkat(fd, src, path, flags):
    if libc.linkat(fd, os.fsencode(src), AT_FDCWD, os.fsencode(path), flags) < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))

def link_empty(fd, path):
    linkat(fd, "", path, AT_EMPTY_PATH)

def link_proc(fd, path):
    # (os.link calls link(2), which would link the magic link itself)
    linkat(AT_FDCWD, f"/proc/self/fd/{fd}", path, AT_SYMLINK_FOLLOW)

def read_name(path):
    with open(path, "rb") as f:
        return f.read().decode()

for d in dirs:
    p = os.path.join(root, d)
    k = f"{d}/{tag}"
    before = sorted(os.listdir(p))
    for how, link in (("empty", link_empty), ("proc", link_proc)):
        name = os.path.join(p, f"{tag}_{how}")
        try:
            fd = os.open(p, os.O_TMPFILE | os.O_RDWR, 0o666)
        except OSError as e:
            out[f"{k}/{how}/open"] = err(e)
            continue
        step(f"{k}/{how}/fstat", lambda: st(os.fstat(fd)))
        step(f"{k}/{how}/write", lambda: os.pwrite(fd, b"hello tmpfile\n", 0))
        step(f"{k}/{how}/read", lambda: os.pread(fd, 100, 0).decode())
        step(f"{k}/{how}/fchmod", lambda: (os.fchmod(fd, 0o640), st(os.fstat(fd)))[1])
        step(f"{k}/{how}/link", lambda: link(fd, name))
        step(f"{k}/{how}/named", lambda: st(os.stat(name)))
        step(f"{k}/{how}/content", lambda: read_name(name))
        step(f"{k}/{how}/fstat_after", lambda: st(os.fstat(fd)))
        # the fd and the name are one file: a write through one shows through the other
        step(f"{k}/{how}/append", lambda: os.pwrite(fd, b"more\n", 14))
        step(f"{k}/{how}/content2", lambda: read_name(name))
        step(f"{k}/{how}/link2", lambda: link_proc(fd, name + "2"))
        step(f"{k}/{how}/nlink2", lambda: os.fstat(fd).st_nlink)
        os.close(fd)
    # closed without a name: nothing is left
    try:
        fd = os.open(p, os.O_TMPFILE | os.O_WRONLY, 0o600)
        os.write(fd, b"gone\n")
        out[f"{k}/unnamed/fstat"] = st(os.fstat(fd))
        os.close(fd)
    except OSError as e:
        out[f"{k}/unnamed/open"] = err(e)
    # O_EXCL: never linkable
    try:
        fd = os.open(p, os.O_TMPFILE | os.O_EXCL | os.O_RDWR, 0o600)
        os.write(fd, b"excl\n")
        step(f"{k}/excl/link_proc", lambda: link_proc(fd, os.path.join(p, f"{tag}_excl")))
        step(f"{k}/excl/link_empty", lambda: link_empty(fd, os.path.join(p, f"{tag}_excl")))
        step(f"{k}/excl/fstat", lambda: st(os.fstat(fd)))
        os.close(fd)
    except OSError as e:
        out[f"{k}/excl/open"] = err(e)
    after = sorted(os.listdir(p))
    out[f"{k}/new_names"] = sorted(set(after) - set(before))
for what, path, flags in (("file", "lower_file", os.O_RDWR), ("rdonly", "upper_d", os.O_RDONLY),
                          ("missing", "nowhere", os.O_RDWR)):
    try:
        os.close(os.open(os.path.join(root, path), os.O_TMPFILE | flags, 0o600))
        out[f"{tag}/{what}"] = 0
    except OSError as e:
        out[f"{tag}/{what}"] = err(e)
print(json.dumps(out))
"""


def _run_all(mnt):
    out = {}
    for uid, tag, dirs in ((0, "root", DIRS), (USER, "user", USER_DIRS)):
        r = wh.as_user(uid, uid, "/usr/bin/python3", "-c", CHILD, str(mnt), tag,
                       json.dumps(dirs))
        assert r.returncode == 0, r.stderr
        out.update(json.loads(r.stdout))
    return out


@pytest.fixture(scope="module")
def results():
    """(kernel results, ovlfs results, kernel upper snapshot, ovlfs upper snapshot, ovlfs
    work leftovers)."""
    with wh.public_dir() as pub:
        k = helpers.build_layers(pub / "k", [LOWER], UPPER)
        with k.kernel(mnt=pub / "mk", extra_opts=wh.KERNEL_OPTS) as km:
            kres = _run_all(km)
        o = helpers.build_layers(pub / "o", [LOWER], UPPER)
        with o.ovlfs(mnt=pub / "mo") as om:
            ores = _run_all(om)
            # while mounted too: the unnamed files left nothing behind
            oleft = wh.work_leftovers(o.work)
        yield (kres, ores, helpers.snapshot_upper(k.upper), helpers.snapshot_upper(o.upper),
               oleft + wh.work_leftovers(o.work))


def _keys():
    """A test per directory and user (the refusals the kernel makes before asking the
    filesystem are checked in test_reference_results)."""
    return sorted(f"{d}/{tag}" for tag, dirs in (("root", DIRS), ("user", USER_DIRS))
                  for d in dirs)


@pytest.mark.parametrize("prefix", _keys())
def test_same_as_kernel(results, prefix):
    kernel, ovlfs = results[:2]
    kv = {k: v for k, v in kernel.items() if k == prefix or k.startswith(prefix + "/")}
    ov = {k: v for k, v in ovlfs.items() if k == prefix or k.startswith(prefix + "/")}
    assert kv, f"no kernel results for {prefix}"
    assert ov == kv


def test_reference_results(results):
    """The kernel's own results for the main cases (guards the setup), and ovlfs's."""
    for side in results[:2]:
        for tag in ("root", "user"):
            k = f"lower_d/{tag}/empty" if tag == "root" else f"lower_d/{tag}/proc"
            assert side[f"{k}/fstat"]["nlink"] == 0
            assert side[f"{k}/fstat"]["mode"] == "-rw-r--r--"  # 0666 & ~022
            assert side[f"{k}/read"] == "hello tmpfile\n"
            assert side[f"{k}/link"] is None
            assert side[f"{k}/named"]["mode"] == "-rw-r-----"  # the fchmod
            assert side[f"{k}/named"]["nlink"] == 1
            assert side[f"{k}/content2"] == "hello tmpfile\nmore\n"
            assert side[f"lower_d/{tag}/excl/link_proc"] == "ENOENT"
            assert side[f"lower_d/{tag}/unnamed/fstat"]["nlink"] == 0
        assert side["lower_d/user/proc/named"]["uid"] == USER
    kernel, ovlfs = results[:2]
    refusals = {f"{t}/{w}" for t in ("root", "user") for w in ("file", "rdonly", "missing")}
    assert {k: ovlfs[k] for k in refusals} == {k: kernel[k] for k in refusals}
    assert kernel["root/file"] == "ENOTDIR" and kernel["user/rdonly"] == "EINVAL"


def test_upper_layer_same_as_kernel(results):
    """Linked tmpfiles are in the upper layer, unlinked ones nowhere, on both; nothing is
    left in the work directory."""
    helpers.assert_same_tree(results[2], results[3])
    assert results[4] == []


# Opens a tmpfile in the mount, writes, says so, and waits to be killed.
HOLDER = r"""
import os, sys, time
fd = os.open(sys.argv[1], os.O_TMPFILE | os.O_RDWR, 0o600)
os.write(fd, b"x" * 65536)
print("open", flush=True)
time.sleep(60)
"""


def _names(*roots):
    return sorted(os.path.relpath(os.path.join(d, n), r) for r in roots
                  for d, dirs, files in os.walk(r) for n in dirs + files)


def test_daemon_killed_leaves_nothing(tmp_path):
    """An unnamed file open when the daemon dies leaves no trace in the upper layer or the
    work directory (it is an O_TMPFILE of the upper filesystem), even without a remount to
    clean up."""
    ls = helpers.build_layers(tmp_path / "l", [LOWER], UPPER)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.Popen(helpers.ovlfs_command(ls.lowers, ls.upper, ls.work, (), mnt),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    helpers._ACTIVE[str(mnt)] = proc
    holder = None
    try:
        helpers.wait_fuse_mount(mnt, proc)
        before = _names(ls.upper, ls.work)  # with the work directory the mount made
        holder = subprocess.Popen(["/usr/bin/python3", "-c", HOLDER, str(mnt / "upper_d")],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        assert holder.stdout.readline() == "open\n", holder.stderr.read()
        proc.kill()  # SIGKILL to the daemon we started, and only to it
        proc.wait(helpers.EXIT_TIMEOUT)
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        helpers.unmount(mnt, fuse=True)
        helpers._ACTIVE.pop(str(mnt), None)
    assert helpers.mount_fstype(mnt) is None
    assert _names(ls.upper, ls.work) == before
