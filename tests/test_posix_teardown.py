"""The layers' filesystem can be unmounted as soon as the overlay is gone.

Container runtimes unmount the overlay and then, at once, the filesystem holding its
layers; with the kernel overlayfs that always works. ovlfs must hold no fd in the layers by
then. After SIGTERM the daemon unmounts itself lazily: the mount point vanishes at once,
while the daemon still tears down (the kernel dropping its inodes, the daemon freeing its
nodes, 0.1 s per 100,000); it used to close the layer fds last, so for that long the
layers' filesystem answered EBUSY (measured: 70-110 failed umount attempts, 0.4-0.8 s, with
100,000 known names). Each test mounts the layers on a scratch tmpfs, makes the daemon know
many names, removes the overlay, and unmounts the tmpfs right away, with a small retry
budget.
"""
import subprocess
import time

import pytest

import helpers

pytestmark = helpers.needs_fuse

DIRS, PER_DIR = 30, 1000  # 30,000 names the daemon knows
RETRIES = 5  # umount attempts of the layers' tmpfs, 1 ms apart


def _umount_layers(tmpfs):
    """Failed attempts before `umount tmpfs` succeeded, or None if it never did."""
    for tries in range(RETRIES):
        r = subprocess.run(["umount", str(tmpfs)], capture_output=True, text=True)
        if r.returncode == 0:
            return tries
        assert "busy" in r.stderr, r.stderr
        time.sleep(0.001)
    return None


@pytest.mark.parametrize("how", ["sigterm", "umount"])
def test_layers_unmountable_right_after(tmp_path, how):
    with helpers.mount_tmpfs(tmp_path / "layers", "size=256m") as tm:
        lower, upper, work = tm / "lower", tm / "upper", tm / "work"
        for d in (lower, upper, work):
            d.mkdir()
        for i in range(DIRS):
            (lower / f"d{i}").mkdir()
            for j in range(PER_DIR):
                (lower / f"d{i}" / f"f{j}").write_bytes(b"")
        mnt = tmp_path / "mnt"
        mnt.mkdir()
        cmd = helpers.ovlfs_command([lower], upper, work, mnt=mnt)
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            helpers.wait_fuse_mount(mnt, proc)
            # Files written and closed (copy-ups, passthrough backing files), then every name
            # looked up; the kernel has long released the files by the end of it. (A file
            # closed just before the overlay goes can keep its layer file busy a little
            # longer: the kernel drops a passthrough backing file only with the release
            # request the daemon did not serve any more.)
            for i in range(50):
                (mnt / f"d{i % DIRS}" / f"f{i}").write_text("x\n")
            subprocess.run(["find", str(mnt)], stdout=subprocess.DEVNULL, check=True)
            if how == "sigterm":
                proc.terminate()
                deadline = time.monotonic() + helpers.EXIT_TIMEOUT
                while helpers.is_fuse_mount(mnt) and time.monotonic() < deadline:
                    time.sleep(0.0005)
                assert not helpers.is_fuse_mount(mnt)
            else:
                subprocess.run(["umount", str(mnt)], check=True)
            busy = _umount_layers(tm)
            assert busy is not None, f"{tm} still busy after {RETRIES} umount attempts"
            assert helpers.reap(proc) == 0
        finally:
            helpers.unmount(mnt, fuse=True)
            helpers.reap(proc)
