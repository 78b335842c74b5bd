"""verity=off|on|require (issue #16), as the kernel overlayfs's (Linux 6.6+): a metacopy
record (trusted.overlay.metacopy) may carry the fs-verity digest of its data file. With
verity=on such a file opens only if the data file has fs-verity with that digest, else EIO;
with require a record without a digest is refused too; off ignores digests. A metadata-only
copy-up records the data's digest under on/require, and under require copies the data when
the lower file has no fs-verity.

The layers live on a loop-mounted ext4 made with `-O verity`. Each case is compared with the
kernel on the same layers. Where the kernel has no fs-verity (CONFIG_FS_VERITY unset: no
file can have a digest) the cases needing a verity-enabled file are skipped.
"""
import errno
import os
import shutil
import subprocess

import pytest

import helpers

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

KERNEL_MC = ("index=off", "redirect_dir=on", "metacopy=on")
METACOPY = "trusted.overlay.metacopy"
DATA = "the data below\n"
# A record naming a SHA-256 (the kernel's HASH_ALGO_SHA256 = 4) digest no file has here.
FOREIGN_DIGEST = bytes([0, 4 + 32, 0, 4]) + bytes(range(32))


def _run(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def ext4(tmp_path):
    """A loop-mounted ext4 with the verity feature; always unmounted and detached."""
    if not shutil.which("mkfs.ext4") or not shutil.which("losetup"):
        pytest.skip("needs mkfs.ext4 and losetup")
    img, mnt = tmp_path / "ext4.img", tmp_path / "ext4"
    mnt.mkdir()
    with open(img, "wb") as f:
        f.truncate(64 << 20)
    _run("mkfs.ext4", "-q", "-O", "verity", str(img))
    loop = _run("losetup", "-f", "--show", str(img))
    try:
        _run("mount", loop, str(mnt))
        try:
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)], check=False)
            if os.path.ismount(mnt):
                subprocess.run(["umount", "-l", str(mnt)], check=False)
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)


def _enable_verity(path):
    """fs-verity on path (the fsverity tool): True if it took."""
    if not shutil.which("fsverity"):
        return False
    return subprocess.run(["fsverity", "enable", str(path)], capture_output=True).returncode == 0


def _read(path):
    """The content, or the errno of the failing open/read."""
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        return errno.errorcode[e.errno]


def _layers(base, files):
    ls = helpers.build_layers(base, [files])
    return ls


def _stub(ls, name, record):
    """A stub of the lower file name in the upper layer, carrying record."""
    size = os.lstat(ls.lowers[0] / name).st_size
    with open(ls.upper / name, "wb") as f:
        f.truncate(size)
    os.setxattr(ls.upper / name, METACOPY, record)


@pytest.mark.parametrize("mode", ["off", "on", "require"])
def test_records_checked_as_the_kernel(ext4, tmp_path, mode):
    """A stub without digest and one whose digest its data file lacks, read by the kernel
    and by ovlfs with the same verity= mode: the same content or the same EIO."""
    ls = _layers(ext4 / "l", {"plain": DATA, "digested": DATA})
    _stub(ls, "plain", b"")
    _stub(ls, "digested", FOREIGN_DIGEST)
    opts = [f"verity={mode}"]
    with ls.kernel(mnt=tmp_path / "mk", extra_opts=KERNEL_MC + tuple(opts)) as m:
        theirs = {n: (os.lstat(m / n).st_size, _read(m / n)) for n in ("plain", "digested")}
    with ls.ovlfs(mnt=tmp_path / "mo", extra_opts=["metacopy=on"] + opts) as m:
        ours = {n: (os.lstat(m / n).st_size, _read(m / n)) for n in ("plain", "digested")}
        log = m.log()
    expected = {
        "off": {"plain": DATA, "digested": DATA},
        "on": {"plain": DATA, "digested": "EIO"},
        "require": {"plain": "EIO", "digested": "EIO"},
    }[mode]
    assert {n: r for n, (_, r) in theirs.items()} == expected
    assert ours == theirs  # stat works in every case: only the open is refused
    # Each refusal says why in a log line, as the kernel's does in its log.
    assert ("has no fs-verity digest (verity=require)" in log) == (mode == "require")
    assert ("data file of digested has no fs-verity digest" in log) == (mode != "off")
    # Refusing left the stubs alone.
    assert os.getxattr(ls.upper / "digested", METACOPY) == FOREIGN_DIGEST


@pytest.mark.parametrize("mode", ["on", "require"])
def test_metadata_copy_up_without_fs_verity(ext4, tmp_path, mode):
    """chmod of a lower file without fs-verity: under on an empty record (nothing to
    record), under require a full copy; as the kernel's on a twin of the layers."""
    results = {}
    for who in ("kernel", "ovlfs"):
        ls = _layers(ext4 / who, {"f": DATA})
        if who == "kernel":
            mount = ls.kernel(mnt=tmp_path / "mk", extra_opts=KERNEL_MC + (f"verity={mode}",))
        else:
            mount = ls.ovlfs(mnt=tmp_path / "mo", extra_opts=["metacopy=on", f"verity={mode}"])
        with mount as m:
            os.chmod(m / "f", 0o600)
            assert (m / "f").read_text() == DATA
        up = ls.upper / "f"
        record = os.getxattr(up, METACOPY) if METACOPY in os.listxattr(up) else None
        with open(up, "rb") as f:
            results[who] = (record, f.read() == DATA.encode(), os.lstat(up).st_mode & 0o777)
    assert results["ovlfs"] == results["kernel"]
    if mode == "on":
        assert results["kernel"] == (b"", False, 0o600)  # a stub, no data
    else:
        assert results["kernel"] == (None, True, 0o600)  # the data copied


def test_digest_recorded_and_checked(ext4, tmp_path):
    """With fs-verity on the lower file: the kernel's stub records its digest, ovlfs records
    the same, reads through it under verity=on, and refuses it (EIO, as the kernel) once
    the data file is another verity file."""
    probe = ext4 / "probe"
    probe.write_text("probe\n")
    if not _enable_verity(probe):
        pytest.skip("fs-verity cannot be enabled here (kernel without CONFIG_FS_VERITY?)")
    opts = ("verity=on",)
    records = {}
    for who in ("kernel", "ovlfs"):
        ls = _layers(ext4 / who, {"f": DATA})
        assert _enable_verity(ls.lowers[0] / "f")
        if who == "kernel":
            mount = ls.kernel(mnt=tmp_path / "mk", extra_opts=KERNEL_MC + opts)
        else:
            mount = ls.ovlfs(mnt=tmp_path / "mo", extra_opts=["metacopy=on", *opts])
        with mount as m:
            os.chmod(m / "f", 0o600)
        records[who] = os.getxattr(ls.upper / "f", METACOPY)
        with ls.ovlfs(mnt=tmp_path / "mo", extra_opts=["metacopy=on", *opts]) as m:
            assert (m / "f").read_text() == DATA
    assert len(records["kernel"]) > 4 and records["kernel"][3] != 0
    assert records["ovlfs"] == records["kernel"]
    # The kernel's stub over another verity file: a different digest.
    ls = helpers.LayerSet(ext4 / "kernel", [ext4 / "kernel" / "lower0"],
                          ext4 / "kernel" / "upper", ext4 / "kernel" / "work")
    os.unlink(ls.lowers[0] / "f")
    (ls.lowers[0] / "f").write_text(DATA.upper())
    assert _enable_verity(ls.lowers[0] / "f")
    with ls.kernel(mnt=tmp_path / "mk", extra_opts=KERNEL_MC + opts) as m:
        assert _read(m / "f") == "EIO"
    with ls.ovlfs(mnt=tmp_path / "mo", extra_opts=["metacopy=on", *opts]) as m:
        assert _read(m / "f") == "EIO"
    with ls.ovlfs(mnt=tmp_path / "mo", extra_opts=["metacopy=on", "verity=off"]) as m:
        assert _read(m / "f") == DATA.upper()


def test_verity_values(tmp_path):
    """The kernel's values are taken (without metacopy=on too, as the kernel 6.18 does);
    another is refused."""
    ls = helpers.build_layers(tmp_path / "l", [{"f": DATA}])
    for v in ("off", "on", "require"):
        with ls.ovlfs(mnt=tmp_path / "mo", extra_opts=[f"verity={v}"]) as m:
            assert (m / "f").read_text() == DATA
    with pytest.raises(helpers.MountError, match="verity"):
        with ls.ovlfs(mnt=tmp_path / "mo", extra_opts=["verity=maybe"]):
            pass
