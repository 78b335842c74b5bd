"""Command line of ovlfs: bad input is refused with a non-zero status and exactly one
`ovlfs: <problem>` line on stderr, and nothing gets mounted; --help/--version answer 0;
SIGTERM and fusermount3 -u end a foreground daemon cleanly (status 0, mount gone)."""
import os
import signal
import subprocess

import pytest

from helpers import (build_layer, is_fuse_mount, mount_fstype, mount_kernel, mount_ovlfs,
                     mounts_under, needs_fuse, ovlfs_binary, reap, unmount)

pytestmark = needs_fuse
RUN_TIMEOUT = 10


def run_ovlfs(args, tmp_path):
    """Runs ovlfs with args (-f is added so a wrongly accepted mount stays in the foreground);
    never leaves a mount or a process behind. Returns (status, stdout, stderr)."""
    binary = ovlfs_binary()
    assert os.access(binary, os.X_OK), f"ovlfs binary not found at {binary}"
    proc = subprocess.Popen([str(binary), "-f", *map(str, args)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        for mnt, fstype in mounts_under(tmp_path):
            if fstype.startswith("fuse"):
                unmount(mnt, fuse=True)
        reap(proc)
        out, err = proc.communicate()
        pytest.fail(f"ovlfs did not exit within {RUN_TIMEOUT}s on {args} (it mounted?): {err}")
    return proc.returncode, out, err


def fuse_mounts(tmp_path):
    return [m for m, fstype in mounts_under(tmp_path) if fstype.startswith("fuse")]


def assert_refused(tmp_path, args, *keywords):
    """Non-zero status, one stderr line 'ovlfs: ...' containing one of keywords (any case),
    no fuse mount left below tmp_path."""
    rc, out, err = run_ovlfs(args, tmp_path)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc > 0, f"status {rc} (want > 0) for {args}; stderr: {err!r}"
    assert len(lines) == 1 and lines[0].startswith("ovlfs: "), f"stderr not one 'ovlfs: ' line: {err!r}"
    assert any(k.lower() in lines[0].lower() for k in keywords), \
        f"{lines[0]!r} names none of {keywords}"
    assert not fuse_mounts(tmp_path), "something got mounted"
    return lines[0]


@pytest.fixture
def env(tmp_path):
    """A valid setup: two lowers, upper, work, mount point. Tests break one thing."""
    d = {name: tmp_path / name for name in ("l1", "l2", "upper", "work", "mnt")}
    build_layer(d["l1"], {"a": "1"})
    build_layer(d["l2"], {"b": "2"})
    for name in ("upper", "work", "mnt"):
        d[name].mkdir()
    return d


def opts(lower, upper=None, work=None, extra=""):
    o = f"lowerdir={lower}"
    if upper is not None:
        o += f",upperdir={upper}"
    if work is not None:
        o += f",workdir={work}"
    return ["-o", o + extra]


def test_valid_setup_mounts(env):
    """Guards the fixture: the setup the other tests break is itself accepted."""
    with mount_ovlfs([env["l1"], env["l2"]], env["upper"], env["work"], mnt=env["mnt"]) as m:
        assert sorted(os.listdir(m)) == ["a", "b"]


def test_missing_lower(env, tmp_path):
    missing = tmp_path / "no-such-layer"
    assert_refused(tmp_path, [*opts(f"{env['l1']}:{missing}"), env["mnt"]], str(missing))


def test_lower_not_a_directory(env, tmp_path):
    f = tmp_path / "plain-file"
    f.write_text("x")
    assert_refused(tmp_path, [*opts(f"{f}:{env['l1']}"), env["mnt"]], str(f))


@pytest.mark.parametrize("shape", ["{a}:::{b}", "{a}:", ":{a}", "", "{a}:{b}:", "{a}::"])
def test_empty_lowerdir_entry(env, tmp_path, shape):
    lower = shape.format(a=env["l1"], b=env["l2"])
    assert_refused(tmp_path, [*opts(lower), env["mnt"]], "empty", "lowerdir")


def test_too_many_layers(tmp_path, env):
    many = [tmp_path / "many" / f"{i:03d}" for i in range(501)]
    for p in many:
        p.mkdir(parents=True)
    assert_refused(tmp_path, [*opts(":".join(map(str, many))), env["mnt"]],
                   "500", "501", "too many", "layers")


def test_500_layers_are_accepted(tmp_path, env):
    many = [tmp_path / "many" / f"{i:03d}" for i in range(500)]
    for i, p in enumerate(many):
        build_layer(p, {f"f{i:03d}": str(i)})
    with mount_ovlfs(many, mnt=env["mnt"]) as m:
        assert len(os.listdir(m)) == 500
        assert (m / "f499").read_text() == "499"


@pytest.mark.parametrize("extra", [",frobnicate", ",frobnicate=1"])
def test_unknown_mount_option(env, tmp_path, extra):
    assert_refused(tmp_path, [*opts(env["l1"], extra=extra), env["mnt"]], "frobnicate")


# The kernel overlayfs's feature options: the values whose meaning ovlfs has are accepted
# (the kernel takes the same ones), the others are refused saying what ovlfs does instead.
KERNEL_FEATURES_ACCEPTED = ("index=off", "nfs_export=off", "metacopy=off",
                            "redirect_dir=nofollow", "redirect_dir=off", "xino=off", "xino=on",
                            "redirect_dir=follow", "redirect_dir=on", "uuid=null", "uuid=auto",
                            "uuid=on", "uuid=off", "metacopy=on")


def test_kernel_feature_options_accepted(env):
    lowers, up, work = [env["l1"], env["l2"]], env["upper"], env["work"]
    for extra in (KERNEL_FEATURES_ACCEPTED[:7], KERNEL_FEATURES_ACCEPTED[7:]):
        for o in extra:
            with mount_kernel(lowers, up, work, [o], mnt=env["mnt"]):
                pass  # the kernel knows the name and the value
        with mount_ovlfs(lowers, up, work, extra, mnt=env["mnt"]) as m:
            assert sorted(os.listdir(m)) == ["a", "b"]


@pytest.mark.parametrize("opt,instead", [
    ("nfs_export=on", "nfs_export=off"),
])
def test_kernel_feature_not_supported(env, tmp_path, opt, instead):
    rc, _, err = run_ovlfs([*opts(env["l1"], env["upper"], env["work"], "," + opt),
                            env["mnt"]], tmp_path)
    assert rc == 1, err
    assert err == (f"ovlfs: option '{opt}' is not supported by ovlfs yet (it works as "
                   f"{instead}: ") + err.split(f"{instead}: ", 1)[-1], err
    assert err.count("\n") == 1 and err.endswith(")\n"), err
    assert not fuse_mounts(tmp_path)


@pytest.mark.parametrize("opt", ["index=yes", "uuid=maybe", "redirect_dir="])
def test_kernel_feature_bad_value(env, tmp_path, opt):
    name = opt.split("=")[0]
    line = assert_refused(tmp_path, [*opts(env["l1"], extra="," + opt), env["mnt"]], name)
    assert line.startswith(f"ovlfs: invalid value '{opt.split('=')[1]}' for option '{name}'")


def test_unknown_command_line_flag(env, tmp_path):
    assert_refused(tmp_path, ["--frobnicate", *opts(env["l1"]), env["mnt"]], "frobnicate")


def test_no_lowerdir(env, tmp_path):
    assert_refused(tmp_path, ["-o", f"upperdir={env['upper']},workdir={env['work']}", env["mnt"]],
                   "lowerdir")


def test_no_mount_point(env, tmp_path):
    assert_refused(tmp_path, opts(env["l1"]), "mount point", "mountpoint")


def test_upperdir_without_workdir(env, tmp_path):
    assert_refused(tmp_path, [*opts(env["l1"], upper=env["upper"]), env["mnt"]], "workdir")


def test_upper_not_writable(env, tmp_path, tmpfs):
    ro = tmpfs("rofs", "size=4m")
    (ro / "upper").mkdir()
    (ro / "work").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
    with pytest.raises(OSError):  # really read-only
        (ro / "upper" / "probe").touch()
    assert_refused(tmp_path, [*opts(env["l1"], ro / "upper", ro / "work"), env["mnt"]],
                   str(ro / "upper"), "read-only", "writable", "upperdir")


def test_workdir_on_another_filesystem(env, tmp_path, tmpfs):
    other = tmpfs("otherfs", "size=4m")
    (other / "work").mkdir()
    assert_refused(tmp_path, [*opts(env["l1"], env["upper"], other / "work"), env["mnt"]],
                   "workdir", "filesystem", "same")


@pytest.mark.parametrize("nesting", ["work-in-upper", "upper-in-work", "same-dir"])
def test_upper_and_work_nested(env, tmp_path, nesting):
    upper, work = {"work-in-upper": (env["upper"], env["upper"] / "w"),
                   "upper-in-work": (env["work"] / "u", env["work"]),
                   "same-dir": (env["upper"], env["upper"])}[nesting]
    for d in (upper, work):
        d.mkdir(exist_ok=True)
    assert_refused(tmp_path, [*opts(env["l1"], upper, work), env["mnt"]],
                   "workdir", "upperdir", "nested", "inside", "overlap")


def test_upper_inside_a_lower_layer(env, tmp_path):
    upper = env["l2"] / "upper"
    upper.mkdir()
    assert_refused(tmp_path, [*opts(f"{env['l1']}:{env['l2']}", upper, env["work"]), env["mnt"]],
                   "upperdir", "lower", "overlap", "inside")


def test_missing_mount_point(env, tmp_path):
    missing = tmp_path / "no-such-mnt"
    assert_refused(tmp_path, [*opts(env["l1"]), missing], str(missing), "mount point",
                   "mountpoint")


def test_busy_mount_point(env, tmp_path, tmpfs):
    busy = tmpfs("busy", "size=1m")
    assert_refused(tmp_path, [*opts(env["l1"]), busy], str(busy), "busy", "mount")
    assert mount_fstype(busy) == "tmpfs"


@pytest.mark.parametrize("flag, expect", [("--help", "lowerdir"), ("-h", "lowerdir"),
                                          ("--version", "ovlfs"), ("-V", "ovlfs")])
def test_help_and_version(tmp_path, env, flag, expect):
    rc, out, err = run_ovlfs([flag], tmp_path)
    assert rc == 0, (rc, err)
    assert expect in out.lower(), out
    assert not fuse_mounts(tmp_path)


def test_sigterm_unmounts_cleanly(env):
    with mount_ovlfs([env["l1"], env["l2"]], env["upper"], env["work"], mnt=env["mnt"]) as m:
        m.proc.send_signal(signal.SIGTERM)
        rc = reap(m.proc, timeout=10)
        assert rc == 0, f"status {rc} after SIGTERM; output: {m.log()}"
        assert not is_fuse_mount(m), "still mounted after SIGTERM"


def test_fusermount_ends_daemon(env):
    with mount_ovlfs([env["l1"]], mnt=env["mnt"]) as m:
        subprocess.run(["fusermount3", "-u", str(m)], check=True)
        rc = reap(m.proc, timeout=10)
        assert rc == 0, f"status {rc} after fusermount3 -u; output: {m.log()}"
        assert not is_fuse_mount(m)
