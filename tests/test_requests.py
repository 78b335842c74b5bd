"""Round trips: the requests the daemon reads, counted per opcode (SIGUSR1 logs them as
"requests: LOOKUP=N ..."; bench/README.md counts them per file of each workload). Each test
checks that a request the kernel does not need is not sent, by counting what arrives."""
import os
import re
import signal
import time

import pytest

from helpers import needs_fuse

pytestmark = needs_fuse

POLL_LIMIT = 120.0  # seconds of polling before giving up (a failure bound, not a measure)


def request_counts(m):
    """Sends SIGUSR1 and returns the per-opcode counts of the "requests:" line it logs."""
    before = len(re.findall(r"requests:", m.log()))
    m.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + POLL_LIMIT
    while len(re.findall(r"requests:.*", m.log())) <= before:
        assert m.proc.poll() is None, "the daemon died on SIGUSR1"
        assert time.monotonic() < deadline, "no request counts logged after SIGUSR1"
        time.sleep(0.05)
    line = re.findall(r"requests:(.*)", m.log())[-1]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


def sent(before, after, op):
    return after.get(op, 0) - before.get(op, 0)


def test_request_counts_per_opcode(layers):
    """SIGUSR1 also logs how many requests of each kind the daemon read: a name looked up
    once more is one LOOKUP more, a new file one CREATE more."""
    ls = layers(lowers=[{"f": "x"}])
    with ls.ovlfs() as m:
        before = request_counts(m)
        assert before.get("INIT") == 1
        assert not os.path.exists(m / "absent-1")
        (m / "new").write_text("y")
        after = request_counts(m)
        assert sent(before, after, "LOOKUP") >= 2  # absent-1, new
        assert sent(before, after, "CREATE") == 1


WRITES = 64


@pytest.mark.parametrize("opts", [(), ("passthrough=0",)], ids=["default", "no-passthrough"])
def test_no_capability_lookup_per_write(layers, opts):
    """With FUSE_HANDLE_KILLPRIV_V2 the kernel asks for security.capability once per inode
    (until its attributes are refreshed), not before every write: 64 writes of 4 KiB to a
    new file send a GETXATTR or two, not 64. (The set-id rule itself: test_setid_clearing.)"""
    ls = layers(lowers=[{"f": "x"}])
    with ls.ovlfs(extra_opts=opts) as m:
        before = request_counts(m)
        fd = os.open(m / "big", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            for _ in range(WRITES):
                assert os.write(fd, b"z" * 4096) == 4096
        finally:
            os.close(fd)
        after = request_counts(m)
        assert os.path.getsize(m / "big") == WRITES * 4096
        getxattrs = sent(before, after, "GETXATTR")
        assert getxattrs <= 4, f"{getxattrs} GETXATTR requests for {WRITES} writes"
