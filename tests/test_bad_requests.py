"""Malformed and out-of-range requests: each gets the errno a local filesystem gives, and the
kernel overlayfs is the reference. The same list of operations runs on a plain directory of
the test disk (ext4 here; "local"), on the kernel overlayfs and on ovlfs over identical
layers, on fresh names each (a tmpfs is shown too, for information); ovlfs must answer as the kernel overlayfs, and stay alive.

Most of these never reach the daemon (the VFS refuses them: NAME_MAX, PATH_MAX, xattr sizes,
renameat2 flags, O_DIRECTORY|O_CREAT); the test makes sure that what does reach it (huge
offsets and sizes, long symlink targets, odd mknod types, reads past the end) is answered as
the reference answers, and that none of it upsets the daemon.
"""
import ctypes
import os
import stat

import pytest

import helpers
from helpers import build_layer, build_layers, needs_fuse, needs_kernel_overlay
import write_helpers as wh

pytestmark = [needs_fuse, needs_kernel_overlay]

LOWER = {"f": "data", "g": "gdata", "d": {"x": "x"}}
LONG = "n" * 256
OK_NAME = "m" * 255
RENAME_NOREPLACE, RENAME_EXCHANGE = wh.RENAME_NOREPLACE, wh.RENAME_EXCHANGE


def renameat2_raw(src, dst, flags):
    """renameat2 through syscall(2): glibc passes the flags on unchanged anyway."""
    f = wh.libc.syscall
    f.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                  ctypes.c_uint]
    nr = {"x86_64": 316, "aarch64": 276}.get(os.uname().machine, 316)
    ret = f(nr, wh.AT_FDCWD, os.fsencode(src), wh.AT_FDCWD, os.fsencode(dst), flags)
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(src))


def with_fd(path, flags, fn):
    fd = os.open(path, flags, 0o644)
    try:
        return fn(fd)
    finally:
        os.close(fd)


def bad_ops(r):
    """name -> callable; every operation uses its own names under the root r."""
    deep = "/".join(["q" * 200] * 21)  # > PATH_MAX (4096) in total
    return {
        # NAME_MAX
        "create_long": lambda: with_fd(r / LONG, os.O_CREAT | os.O_WRONLY, lambda fd: None),
        "create_255": lambda: with_fd(r / OK_NAME, os.O_CREAT | os.O_WRONLY, lambda fd: None),
        "mkdir_long": lambda: os.mkdir(r / ("1" + LONG)),
        "rename_long": lambda: os.rename(r / "f", r / ("2" + LONG)),
        "link_long": lambda: os.link(r / "g", r / ("3" + LONG)),
        "symlink_long": lambda: os.symlink("t", r / ("4" + LONG)),
        "setxattr_long_path": lambda: os.setxattr(r / ("5" + LONG), "user.k", b"v"),
        "lookup_long": lambda: os.lstat(r / "d" / LONG),
        # PATH_MAX
        "stat_deep": lambda: os.lstat(r / deep),
        "mkdir_deep": lambda: os.mkdir(r / deep),
        # xattrs
        "xattr_value_64k+1": lambda: os.setxattr(r / "g", "user.big", b"v" * (65536 + 1)),
        "xattr_value_64k": lambda: os.setxattr(r / "g", "user.max", b"v" * 65536),
        "xattr_name_256": lambda: os.setxattr(r / "g", "user." + "k" * 251, b"v"),
        "getxattr_name_256": lambda: os.getxattr(r / "g", "user." + "k" * 251),
        "xattr_empty_name": lambda: os.setxattr(r / "g", "", b"v"),
        "xattr_no_namespace": lambda: os.setxattr(r / "g", "nonamespace", b"v"),
        # open flags
        "open_dir_creat": lambda: with_fd(r / "oc", os.O_DIRECTORY | os.O_CREAT, lambda fd: None),
        "open_dir_creat_exists": lambda: with_fd(r / "d", os.O_DIRECTORY | os.O_CREAT,
                                                 lambda fd: None),
        "open_file_as_dir": lambda: with_fd(r / "g", os.O_DIRECTORY, lambda fd: None),
        "open_dir_write": lambda: with_fd(r / "d", os.O_WRONLY, lambda fd: None),
        # renameat2
        "rename_bad_flags": lambda: renameat2_raw(r / "g", r / "g2", 1 << 7),
        "rename_exchange_noreplace": lambda: renameat2_raw(r / "g", r / "d",
                                                           RENAME_EXCHANGE | RENAME_NOREPLACE),
        "rename_exchange_missing": lambda: renameat2_raw(r / "g", r / "nothere", RENAME_EXCHANGE),
        "rename_dir_into_itself": lambda: os.rename(r / "d", r / "d" / "sub"),
        # offsets and sizes
        "read_past_eof": lambda: with_fd(r / "g", os.O_RDONLY, lambda fd: os.pread(fd, 10, 1 << 40)),
        "read_at_max": lambda: with_fd(r / "g", os.O_RDONLY,
                                       lambda fd: os.pread(fd, 10, (1 << 63) - 1)),
        "pwrite_at_max": lambda: with_fd(r / "pw", os.O_CREAT | os.O_WRONLY,
                                         lambda fd: os.pwrite(fd, b"x", (1 << 63) - 1)),
        "pwrite_near_max": lambda: with_fd(r / "pw2", os.O_CREAT | os.O_WRONLY,
                                           lambda fd: os.pwrite(fd, b"x", (1 << 63) - 2)),
        "truncate_negative": lambda: os.truncate(r / "g", -1),
        "ftruncate_negative": lambda: with_fd(r / "g", os.O_WRONLY, lambda fd: os.ftruncate(fd, -1)),
        "truncate_huge": lambda: (with_fd(r / "tr", os.O_CREAT | os.O_WRONLY, lambda fd: None),
                                  os.truncate(r / "tr", (1 << 63) - 1))[1],
        "truncate_16t": lambda: with_fd(r / "tr2", os.O_CREAT | os.O_WRONLY,
                                        lambda fd: os.ftruncate(fd, 1 << 44)),
        "lseek_negative": lambda: with_fd(r / "g", os.O_RDONLY, lambda fd: os.lseek(fd, -1, 0)),
        "fallocate_huge": lambda: with_fd(r / "fa", os.O_CREAT | os.O_WRONLY,
                                          lambda fd: wh.fallocate(fd, 0, (1 << 63) - 2, 1)),
        # symlink targets
        "symlink_target_pathmax+1": lambda: os.symlink("t" * 4097, r / "s1"),
        "symlink_target_pathmax": lambda: os.symlink("t" * 4096, r / "s2"),
        "symlink_target_pathmax-1": lambda: (os.symlink("t" * 4095, r / "s3"),
                                             len(os.readlink(r / "s3")))[1],
        "symlink_empty_target": lambda: os.symlink("", r / "s4"),
        # mknod
        "mknod_fifo": lambda: os.mknod(r / "n1", stat.S_IFIFO | 0o644),
        "mknod_sock": lambda: os.mknod(r / "n2", stat.S_IFSOCK | 0o644),
        "mknod_chr": lambda: os.mknod(r / "n3", stat.S_IFCHR | 0o644, os.makedev(1, 3)),
        "mknod_blk": lambda: os.mknod(r / "n4", stat.S_IFBLK | 0o644, os.makedev(7, 0)),
        "mknod_whiteout_dev": lambda: os.mknod(r / "n5", stat.S_IFCHR | 0o644, 0),
        "mknod_type_0": lambda: (os.mknod(r / "n6", 0o644), stat.S_IFMT(os.lstat(r / "n6").st_mode))[1],
        "mknod_dir": lambda: os.mknod(r / "n7", stat.S_IFDIR | 0o755),
        "mknod_symlink": lambda: os.mknod(r / "n8", stat.S_IFLNK | 0o777),
        "mknod_bad_type": lambda: os.mknod(r / "n9", 0o110000 | 0o644),
        "mknod_existing": lambda: os.mknod(r / "g", stat.S_IFIFO | 0o644),
        # directories
        "rmdir_file": lambda: os.rmdir(r / "g"),
        "rmdir_nonempty": lambda: os.rmdir(r / "d"),
        "rmdir_dot": lambda: os.rmdir(os.path.join(r, "d", ".")),  # pathlib drops "."
        "rmdir_dotdot": lambda: os.rmdir(os.path.join(r, "d", "..")),
        "unlink_dir": lambda: os.unlink(r / "d"),
        "link_dir": lambda: os.link(r / "d", r / "dl"),
        "mkdir_exists": lambda: os.mkdir(r / "d"),
        "create_in_file": lambda: with_fd(r / "g" / "x", os.O_CREAT | os.O_WRONLY, lambda fd: None),
    }


def run_all(root):
    return {name: helpers.errno_result(fn) for name, fn in bad_ops(root).items()}


@pytest.mark.parametrize("where", ["disk", "tmpfs"])
def test_bad_requests_answer_like_the_kernel(tmp_path, tmpfs, where):
    """Layers (and the plain directory) on the test disk, or on a tmpfs."""
    base = tmp_path if where == "disk" else tmpfs("layers", "size=256m")
    results = {"local": run_all(build_layer(base / "local", LOWER)),
               "tmpfs": run_all(build_layer(tmpfs("t") / "r", LOWER))}
    ls = build_layers(base / "k", [LOWER])
    with ls.kernel(extra_opts=wh.KERNEL_OPTS) as k:
        results["kernel"] = run_all(k)
    ls2 = build_layers(base / "o", [LOWER])
    with ls2.ovlfs() as m:
        results["ovlfs"] = run_all(m)
        assert m.proc.poll() is None, "the daemon died"
        assert os.stat(m / "d" / "x").st_size == 1  # and still answers
        assert os.stat(m / "f").st_size == 4
        with open(m / "after", "wb") as f:
            f.write(b"ok")
    width = max(map(len, results["ovlfs"]))
    for name in results["ovlfs"]:
        row = [str(results[b][name])[:14] for b in ("tmpfs", "local", "kernel", "ovlfs")]
        print(f"{name:<{width}} tmpfs={row[0]:<14} local={row[1]:<14} kernel={row[2]:<14} "
              f"ovlfs={row[3]}")
    diff = {n: (results["kernel"][n], v) for n, v in results["ovlfs"].items()
            if v != results["kernel"][n]}
    assert not diff, f"ovlfs answers differently from the kernel overlayfs (kernel, ovlfs): {diff}"
    # the lower layer is untouched by all of it
    assert sorted(os.listdir(ls2.lowers[0])) == ["d", "f", "g"]
    assert (ls2.lowers[0] / "g").read_bytes() == b"gdata"
