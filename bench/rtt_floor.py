#!/usr/bin/python3
"""The FUSE round-trip floor on this machine (bench/README.md, "Where the time goes, per
workload"): the time of one request the daemon answers at once, against the same syscall
on the kernel overlayfs. The request is a getxattr of an absent xattr: FUSE caches no
xattrs, so every call is a GETXATTR, and ovlfs answers it from memory (the node knows it
has none). Prints the median of ROUNDS loops of N calls, and the daemon's CPU per request.
usage (root): bench/rtt_floor.py [OVLFS_BINARY]   env: N (20000), ROUNDS (5)"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

N = int(os.environ.get("N", "20000"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
TICKS = os.sysconf("SC_CLK_TCK")


def daemon_cpu(pid):
    """User + system seconds of pid, from /proc/PID/stat (0 for the kernel's mount)."""
    if pid is None:
        return 0.0
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def loop(path, pid):
    os.stat(path)
    cpu, start = daemon_cpu(pid), time.perf_counter()
    for _ in range(N):
        try:
            os.getxattr(path, "user.absent")
        except OSError:
            pass
    wall = (time.perf_counter() - start) / N * 1e6
    return wall, (daemon_cpu(pid) - cpu) / N * 1e6


def wait_mounted(mnt, proc):
    for _ in range(100):
        if os.path.ismount(mnt):
            return
        if proc.poll() is not None:
            sys.exit(f"ovlfs exited with {proc.returncode}")
        time.sleep(0.05)
    sys.exit("ovlfs did not mount")


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "build/ovlfs"
    with tempfile.TemporaryDirectory(prefix="rtt-floor-") as base:
        for d in ("l", "u", "w", "m", "ku", "kw", "km"):
            os.mkdir(f"{base}/{d}")
        with open(f"{base}/l/f", "w") as f:
            f.write("x")
        proc = subprocess.Popen([binary, "-f", "-o", f"lowerdir={base}/l,upperdir={base}/u,"
                                 f"workdir={base}/w", f"{base}/m"])
        try:
            wait_mounted(f"{base}/m", proc)
            subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={base}/l,"
                            f"upperdir={base}/ku,workdir={base}/kw", f"{base}/km"], check=True)
            try:
                for name, path, pid in (("ovlfs", "m/f", proc.pid), ("kernel", "km/f", None)):
                    runs = [loop(f"{base}/{path}", pid) for _ in range(ROUNDS)]
                    walls = [w for w, _ in runs]
                    print(f"{name:7} getxattr: median {statistics.median(walls):6.2f} us/call "
                          f"({' '.join(f'{w:.2f}' for w in walls)}); daemon CPU "
                          f"{statistics.median(c for _, c in runs):.2f} us/request")
            finally:
                subprocess.run(["umount", f"{base}/km"], check=True)
        finally:
            subprocess.run(["umount", f"{base}/m"], check=False)
            proc.wait()


if __name__ == "__main__":
    main()
