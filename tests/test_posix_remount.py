"""`mount -o remount,ro MNT` and `remount,rw` on an ovlfs mount, as on the kernel overlayfs
(the POSIX fidelity issue). util-linux's mount(8) runs the type's helper for a remount too:
mount.fuse3 runs `ovlfs ovlfs MNT -o ro,noatime,remount,user_id=0,...`, which ovlfs answered
with "unknown option 'remount'". Now it changes the mount's flags with mount(2) (MS_REMOUNT),
which the kernel's FUSE client takes by itself (fs/fuse/inode.c, fuse_reconfigure), and the
daemon goes on serving.

The mount(8) runs use test_integration's supervisor in a private mount namespace, with the
binary under test shadowing /usr/local/sbin there (mount(8) clears PATH); the host's
directories are never touched. The kernel overlayfs gets the same steps."""
import os
import subprocess

import pytest

import helpers
import write_helpers as wh
from test_integration import _needs_unshare, _shadow_dir, env, run_supervised  # noqa: F401

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

STEPS = [
    ["write", "before"],
    ["run", ["mount", "-o", "remount,ro", "MNT"]],
    ["options"],
    ["write", "while_ro"],
    ["run", ["mount", "-o", "remount,rw", "MNT"]],
    ["options"],
    ["write", "after_rw"],
    ["run", ["mount", "-o", "remount,ro,nosuid,nodev,noexec", "MNT"]],
    ["options"],
    ["write", "while_ro2"],
    ["run", ["mount", "-o", "remount,rw,suid,dev,exec", "MNT"]],
    ["options"],
    ["write", "after_rw2"],
]


def _steps(mnt):
    return [[s[0], [mnt if a == "MNT" else a for a in s[1]]] if s[0] == "run" else s
            for s in STEPS]


def _shown(results):
    """The step results with the option lists cut down to what a remount may change."""
    keep = {"ro", "rw", "nosuid", "nodev", "noexec"}
    return [[o for o in r if o in keep] if isinstance(r, list) and r and isinstance(r[0], str)
            else r for r in results]


def _kernel_steps(tmp_path):
    ls = helpers.build_layers(tmp_path / "k", [{"a": "from l1"}])
    with ls.kernel(extra_opts=wh.KERNEL_OPTS) as m:
        from test_integration import _step
        return [_step(s, str(m), dict(os.environ)) for s in _steps(str(m))]


def test_remount_ro_rw_through_mount8(env, tmp_path):  # noqa: F811
    _needs_unshare()
    mnt = str(env["mnt"])
    report = run_supervised({
        "mnt": mnt,
        "binds": [[str(env["tmpbin"]), _shadow_dir()]],
        "mount": ["mount", "-t", "fuse.ovlfs", "ovlfs", mnt, "-o", env["opts"]],
        "unmount": ["umount", mnt],
        "steps": _steps(mnt),
    }, tmp_path, namespace=True)
    assert report["mount_rc"] == 0, report
    ovlfs = report["steps"]
    kernel = _kernel_steps(tmp_path)
    for r in kernel + ovlfs:
        assert not (isinstance(r, list) and isinstance(r[0], int) and r[0]), (kernel, ovlfs)
    assert kernel[3] == "EROFS" and kernel[6] == "ok", kernel
    assert _shown(ovlfs) == _shown(kernel), f"kernel {kernel}\novlfs {ovlfs}"
    assert report["unmount_rc"] == 0 and report["exit_status"] == 0, report
    assert sorted(os.listdir(env["upper"])) == ["after_rw", "after_rw2", "before"]


def test_remount_only_a_fuse_mount(tmp_path):
    """Run by hand on something else, it refuses in one line: `ovlfs -o remount,ro /` must
    not remount the root."""
    r = subprocess.run([str(helpers.ovlfs_binary()), "-o", "remount,ro", str(tmp_path)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1, r
    assert r.stderr == f"ovlfs: cannot remount {tmp_path}: not a FUSE mount\n", r.stderr
