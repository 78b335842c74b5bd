"""Data integrity through the mount: tools/fsx.c (random reads, writes, truncates,
fallocates, mapped reads and writes on one file, every read checked against an in-memory
model) on a file of a lower layer, so that the copy-up happens in the middle of the run (fsx
checks with -u that the upper copy appears at the first write, not before). A read-only fd
and a shared mapping opened before the copy-up stay in use and must show the new data.
Two-process mode: a second process reads, after every operation, through its own fd and
mapping opened before the copy-up.

CI runs a fixed number of operations with fixed seeds; `make fsx N=1000000` runs longer
(FSX_OPS). The same runs on the kernel overlayfs (with -K: its mappings keep showing the
lower file, doc/semantics.md rule 42) check the tool itself. fsx is built from
tools/fsx.c when build/fsx (or FSX_BIN) is missing."""
import os
import pathlib
import shutil
import subprocess

import pytest

from helpers import REPO, build_layers, needs_fuse, needs_kernel_overlay
from write_helpers import KERNEL_OPTS

OPS = int(os.environ.get("FSX_OPS", "10000"))
TIMEOUT = max(120, OPS // 100)  # seconds for one fsx run (about 2500 ops/s here)
SIZE = 100_000  # the lower file: non-trivial content, not page aligned
MAXLEN = 256 * 1024


def fsx_binary():
    """FSX_BIN, else build/fsx (made with `make build/fsx`, or cc if make cannot)."""
    env = os.environ.get("FSX_BIN")
    if env:
        return pathlib.Path(env)
    binary = REPO / "build" / "fsx"
    src = REPO / "tools" / "fsx.c"
    if binary.exists() and binary.stat().st_mtime >= src.stat().st_mtime:
        return binary
    r = subprocess.run(["make", "-C", str(REPO), "build/fsx"], capture_output=True, text=True)
    if r.returncode != 0 or not binary.exists():
        binary.parent.mkdir(exist_ok=True)
        cc = shutil.which("cc") or shutil.which("gcc")
        r = subprocess.run([cc, "-std=gnu11", "-Wall", "-Wextra", "-O2", "-g", "-o", str(binary),
                            str(src)], capture_output=True, text=True)
        assert r.returncode == 0, f"cannot build fsx:\n{r.stderr}"
    return binary


def _content():
    return bytes((i * 7 + 3) % 251 + 1 for i in range(SIZE))


def run_fsx(tmp_path, backend, seed, ops, *flags):
    """fsx on lower-layer file d/f (second of two lower layers) through `backend`."""
    ls = build_layers(tmp_path / "layers", [{"d": {"other": "x"}}, {"d": {"f": _content()}}])
    mount = ls.ovlfs() if backend == "ovlfs" else ls.kernel(extra_opts=KERNEL_OPTS)
    with mount as mnt:
        cmd = [str(fsx_binary()), "-N", str(ops), "-S", str(seed), "-l", str(MAXLEN),
               "-u", str(ls.upper / "d" / "f"), "-R", str(ls.lowers[1] / "d" / "f"), *flags,
               str(mnt / "d" / "f")]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()  # this run's fsx only (a FUSE wait is killable)
            out, err = proc.communicate()
            pytest.fail(f"fsx did not finish within {TIMEOUT}s (hang?)\n{err[-3000:]}")
    assert proc.returncode == 0, f"{' '.join(cmd)}\nexit {proc.returncode}\n{out}{err[-6000:]}"
    assert f"{ops} ops OK" in out
    # the lower layer is untouched, the upper holds the model's last state (fsx's final
    # checks read it back through the mount)
    assert (ls.lowers[1] / "d" / "f").read_bytes() == _content()
    assert (ls.upper / "d" / "f").is_file()
    print(out.strip())
    return out


@needs_fuse
@pytest.mark.parametrize("seed", [1, 2])
def test_fsx_ovlfs(tmp_path, seed):
    run_fsx(tmp_path, "ovlfs", seed, OPS)


@needs_fuse
@pytest.mark.parametrize("seed", [3])
def test_fsx_ovlfs_two_processes(tmp_path, seed):
    run_fsx(tmp_path, "ovlfs", seed, max(OPS // 2, 1), "-2")


@needs_fuse
def test_fsx_ovlfs_no_mmap_small_ops(tmp_path):
    """Small operations (many page-straddling ones), no mmap: the read/write paths alone."""
    run_fsx(tmp_path, "ovlfs", 4, max(OPS // 2, 1), "-M", "-o", "5000")


@needs_kernel_overlay
@pytest.mark.parametrize("flags", [("-K",), ("-K", "-2")], ids=["one", "two_processes"])
def test_fsx_kernel_reference(tmp_path, flags):
    """The tool against the reference: with -K (no mapping of the pre-copy-up file kept) the
    kernel overlayfs passes; without it the early mapping faults or shows old data."""
    run_fsx(tmp_path, "kernel", 5, 3000, *flags)


@needs_kernel_overlay
def test_fsx_detects_stale_mapping_on_kernel(tmp_path):
    """Without -K, fsx must notice that the kernel's early mapping still shows the lower
    file (rule 42): proof that the early-mapping checks look at something."""
    with pytest.raises(AssertionError, match="FAILED"):
        run_fsx(tmp_path, "kernel", 4, 3000)
