"""FUSE over io_uring (-o uring=1): requests come on per-CPU queues instead of /dev/fuse.
The kernel serves them only while its fuse.enable_uring parameter is on: these tests turn it
on for their mounts and put back what it was (`make mount-tests-uring` runs every other
test that way too)."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import helpers
from helpers import needs_fuse

pytestmark = needs_fuse

PARAM = "/sys/module/fuse/parameters/enable_uring"
needs_uring = pytest.mark.skipif(
    not os.access(PARAM, os.W_OK), reason="this kernel has no FUSE over io_uring")


@pytest.fixture
def kernel_uring():
    """Sets the kernel's enable_uring for the test; yields a setter, restores it after."""
    with open(PARAM) as f:
        before = f.read().strip()

    def set_to(on):
        with open(PARAM, "w") as f:
            f.write("Y" if on else "N")

    yield set_to
    with open(PARAM, "w") as f:
        f.write(before)


ls_low_data = os.urandom(3 << 20)


def unmounted_log(m):
    """Unmounts m, waits for its daemon, and returns everything it wrote."""
    helpers.unmount(m, fuse=True)
    m.proc.wait(helpers.EXIT_TIMEOUT)
    return m.log()


def answered(log):
    """(requests, queues) from the daemon's closing line, or None."""
    m = re.search(r"io_uring: (\d+) requests answered through (\d+) queues", log)
    return (int(m.group(1)), int(m.group(2))) if m else None


def workload(m):
    """Every kind of request, with payloads above one page and up to max_write both ways."""
    big = os.urandom(3 << 20)
    (m / "big").write_bytes(big)  # 1 MiB WRITEs (passthrough=0: through the daemon)
    assert (m / "big").read_bytes() == big  # READs, answered from the queue's buffer
    assert (m / "low").read_bytes() == ls_low_data
    with open(m / "low", "ab") as f:  # a copy-up over 1 MiB: answered from a worker
        f.write(b"tail")
    assert (m / "low").read_bytes() == ls_low_data + b"tail"
    os.mkdir(m / "many")
    for i in range(3000):
        (m / "many" / f"entry-{i:05}").write_bytes(b"")
    assert sorted(os.listdir(m / "many")) == [f"entry-{i:05}" for i in range(3000)]
    os.setxattr(m / "big", "user.k", b"v" * 3000)
    assert os.getxattr(m / "big", "user.k") == b"v" * 3000
    os.symlink("big", m / "link")
    assert os.readlink(m / "link") == "big"
    os.rename(m / "big", m / "moved")
    os.unlink(m / "gone")
    os.rmdir(m / "d")
    return big


@needs_uring
@pytest.mark.parametrize("opts", [(), ("threaded=1",)], ids=["loop", "threaded"])
def test_requests_are_answered_through_the_queues(layers, kernel_uring, opts):
    kernel_uring(True)
    ls = layers(lowers=[{"low": ls_low_data, "gone": "x", "d": {}}])
    with ls.ovlfs(extra_opts=("uring=1", "passthrough=0") + opts) as m:
        big = workload(m)
        log = unmounted_log(m)
    got = answered(log)
    assert got is not None, log
    requests, queues = got
    with open("/sys/devices/system/cpu/possible") as f:  # the kernel's queue count
        assert queues == int(f.read().strip().split("-")[-1]) + 1
    assert requests > 3000, log  # one CREATE per entry at least
    assert (ls.upper / "moved").read_bytes() == big
    assert (ls.upper / "low").read_bytes() == ls_low_data + b"tail"
    assert sorted(os.listdir(ls.upper / "many"))[:2] == ["entry-00000", "entry-00001"]


@needs_uring
def test_both_cpus_at_once(layers, kernel_uring):
    """A client pinned to each CPU: each CPU's queue serves its own, at the same time."""
    kernel_uring(True)
    ls = layers(lowers=[{"shared": {f"f{i}": str(i) for i in range(200)}}])
    script = (
        "import os, sys\n"
        "cpu, root = int(sys.argv[1]), sys.argv[2]\n"
        "os.sched_setaffinity(0, {cpu})\n"
        "d = os.path.join(root, f'cpu{cpu}')\n"
        "os.mkdir(d)\n"
        "for r in range(3):\n"
        "    for i in range(500):\n"
        "        p = os.path.join(d, f'{r}-{i}')\n"
        "        open(p, 'w').write(p)\n"
        "        assert open(p).read() == p\n"
        "    for i in range(200):\n"
        "        assert open(os.path.join(root, 'shared', f'f{i}')).read() == str(i)\n"
        "    for i in range(500):\n"
        "        os.unlink(os.path.join(d, f'{r}-{i}'))\n"
        "print('ok')\n")
    cpus = sorted(os.sched_getaffinity(0))
    with ls.ovlfs(extra_opts=("uring=1",)) as m:
        procs = [subprocess.Popen([sys.executable, "-c", script, str(c), str(m)],
                                  stdout=subprocess.PIPE, text=True) for c in cpus]
        outs = [p.communicate(timeout=300)[0] for p in procs]
        assert [p.returncode for p in procs] == [0] * len(cpus)
        assert outs == ["ok\n"] * len(cpus)
        assert sorted(os.listdir(m)) == sorted(["shared"] + [f"cpu{c}" for c in cpus])
        log = unmounted_log(m)
    requests, _ = answered(log)
    assert requests > 3000 * len(cpus)


@needs_uring
def test_kernel_without_it_serves_dev_fuse(layers, kernel_uring):
    kernel_uring(False)
    ls = layers(lowers=[{"a": "lower"}])
    with ls.ovlfs(extra_opts=("uring=1",)) as m:
        assert (m / "a").read_bytes() == b"lower"
        (m / "b").write_bytes(b"new")
        log = unmounted_log(m)
    assert "no io_uring: the kernel does not allow it" in log
    assert answered(log) is None
    assert (ls.upper / "b").read_bytes() == b"new"



@needs_uring
def test_sigterm_under_load_stops_cleanly(layers, kernel_uring):
    """SIGTERM while clients keep the workers busy (fsync, rename): the queue threads, which
    hand requests to the workers too, stop before the workers' pool goes, and the daemon
    exits with status 0 (under ASan a late hand-off to the freed pool fails it)."""
    kernel_uring(True)
    ls = layers(lowers=[{"low": "x"}])
    script = (
        "import os, sys\n"
        "cpu, root = int(sys.argv[1]), sys.argv[2]\n"
        "os.sched_setaffinity(0, {cpu})\n"
        "p = os.path.join(root, f'f{cpu}')\n"
        "print('ready', flush=True)\n"
        "try:\n"
        "    while True:\n"
        "        fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)\n"
        "        os.write(fd, b'data')\n"
        "        os.fsync(fd)\n"
        "        os.close(fd)\n"
        "        os.rename(p, p + '.moved')\n"
        "except OSError:\n"
        "    pass\n")
    cpus = sorted(os.sched_getaffinity(0))
    for _ in range(3):
        with ls.ovlfs(extra_opts=("uring=1", "passthrough=0")) as m:
            procs = [subprocess.Popen([sys.executable, "-c", script, str(c), str(m)],
                                      stdout=subprocess.PIPE, text=True) for c in cpus]
            try:
                for p in procs:
                    assert p.stdout.readline() == "ready\n"
                time.sleep(0.3)
                m.proc.send_signal(signal.SIGTERM)
                rc = m.proc.wait(helpers.EXIT_TIMEOUT)
            finally:
                for p in procs:
                    helpers.reap(p)
                    p.stdout.close()
            assert rc == 0, m.log()
            assert "AddressSanitizer" not in m.log()
