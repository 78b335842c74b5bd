"""System integration: `make install`/`make uninstall` with the man page, `mount -t fuse.ovlfs`
through mount.fuse3, an fstab line, `umount` ending the daemon with status 0, a daemonized
ovlfs, and where its messages go (syslog once daemonized, -d traces requests).

A daemonized ovlfs is nobody's child: each mount here is run by a small supervisor (this file
run as a script) that makes itself the child subreaper, so the daemon is re-parented to it and
its exit status can be collected with waitpid. mount(8) runs its helpers without PATH (so
/bin/sh's default path applies), so the mount(8) tests run the supervisor in a private mount
namespace where /usr/local/sbin is a directory holding an `ovlfs` symlink to the binary under
test; the host's directories are never touched.
"""
import contextlib
import ctypes
import errno
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pytest  # noqa: E402

from helpers import (REPO, build_layer, is_fuse_mount, mount_fstype, mount_ovlfs,  # noqa: E402
                     needs_fuse, ovlfs_binary)

STEP_TIMEOUT = 15  # seconds for one command (mount, umount, make)
SUPERVISOR_TIMEOUT = 60
SHADOW_DIRS = ("/usr/local/sbin", "/usr/local/bin")  # first of /bin/sh's default PATH


# --------------------------------------------------------------------------- supervisor

def _proc_argv(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0")[:-1]]
    except OSError:
        return None


def _proc_ppid(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("PPid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _find_daemon(mnt, parent, timeout=5.0):
    """pid of the ovlfs serving mnt that is parent's child (re-parented to the subreaper)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            argv = _proc_argv(pid)
            if argv and mnt in argv[1:] and _proc_ppid(pid) == parent:
                return pid
        time.sleep(0.05)
    return None


def _wait_child(pid, timeout):
    """Exit status of our child pid (negative signal number if killed), None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def _run(argv, env=None):
    r = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=STEP_TIMEOUT)
    return r.returncode, r.stdout, r.stderr


def _mount_options(mnt):
    """The per-mount options of mnt (mountinfo's sixth field), as a sorted list."""
    with open("/proc/self/mountinfo") as f:
        lines = [line.split() for line in f]
    return sorted([ln[5] for ln in lines if ln[4] == mnt][-1].split(","))


def _step(step, mnt, env):
    """One of spec['steps'] while mounted: ["run", argv] gives [status, stderr],
    ["write", rel] "ok" or the errno name, ["options"] the mount's options."""
    if step[0] == "run":
        rc, _, err = _run(step[1], env)
        return [rc, err]
    if step[0] == "write":
        try:
            (pathlib.Path(mnt) / step[1]).write_text("written")
            return "ok"
        except OSError as e:
            return errno.errorcode.get(e.errno, str(e.errno))
    return _mount_options(mnt)


def supervise(spec):
    """Runs spec['mount'], inspects the daemon and the mount, runs spec['unmount'] and collects
    the daemon's exit status. Always leaves nothing mounted and no daemon running."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    me, mnt = os.getpid(), spec["mnt"]
    out = {"events": []}
    daemon = None
    log_sock = None
    try:
        if spec.get("syslog_socket"):  # our stand-in for the syslog daemon's /dev/log
            log_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            log_sock.bind(spec["syslog_socket"])
            log_sock.setblocking(False)
        for src, dst in spec.get("binds", []):
            subprocess.run(["mount", "--rbind", src, dst], check=True, timeout=STEP_TIMEOUT)
        env = dict(os.environ, **spec.get("env", {}))
        out["mount_rc"], out["mount_stdout"], out["mount_stderr"] = _run(spec["mount"], env)
        if out["mount_rc"] != 0:
            return out
        out["fstype"] = mount_fstype(mnt)
        with open("/proc/self/mounts") as f:
            out["mount_line"] = [line for line in f if f" {mnt} " in line]
        daemon = _find_daemon(mnt, me)
        if daemon is None:
            return out
        if spec.get("pidfile"):
            pathlib.Path(spec["pidfile"]).write_text(str(daemon))
        out["daemon"] = {
            "pid": daemon,
            "argv": _proc_argv(daemon),
            "exe_is_binary": os.path.samefile(f"/proc/{daemon}/exe", spec["binary"]),
            "own_session": os.getsid(daemon) == daemon,
            "stderr": os.readlink(f"/proc/{daemon}/fd/2"),
        }
        out["listing"] = sorted(os.listdir(mnt))
        out["reads"] = {rel: (pathlib.Path(mnt) / rel).read_text() for rel in spec.get("read", [])}
        out["writes"] = {}
        for rel, text in spec.get("write", {}).items():
            try:
                (pathlib.Path(mnt) / rel).write_text(text)
                out["writes"][rel] = "ok"
            except OSError as e:
                out["writes"][rel] = errno.errorcode.get(e.errno, str(e.errno))
        out["steps"] = [_step(step, mnt, env) for step in spec.get("steps", [])]
        out["unmount_rc"], _, out["unmount_stderr"] = _run(spec["unmount"])
        out["exit_status"] = _wait_child(daemon, 10)
        if out["exit_status"] is not None:
            daemon = None
        out["mounted_after"] = mount_fstype(mnt)
    finally:
        if mount_fstype(mnt) is not None:
            out["events"].append("cleanup: still mounted")
            with contextlib.suppress(Exception):
                if _run(["fusermount3", "-u", mnt])[0] != 0:
                    _run(["umount", "-l", mnt])
        if daemon is not None:  # our child: ours to end
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(daemon, sig)
                if _wait_child(daemon, 5) is not None:
                    break
            out["events"].append("cleanup: daemon had to be killed")
        with contextlib.suppress(ChildProcessError):  # anything else re-parented to us
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        if log_sock is not None:
            out["syslog"] = []
            with contextlib.suppress(BlockingIOError):
                while True:
                    out["syslog"].append(log_sock.recv(65536).decode(errors="replace"))
            log_sock.close()
        print(json.dumps(out))
    return out


# --------------------------------------------------------------------------- test side

def run_supervised(spec, tmp_path, namespace=False):
    """Runs the supervisor (in a private mount namespace if asked) and returns its report."""
    spec = dict(spec, binary=str(ovlfs_binary()), pidfile=str(tmp_path / "daemon.pid"))
    cmd = [sys.executable, os.path.abspath(__file__), "supervise", json.dumps(spec)]
    if namespace:
        cmd = ["unshare", "--mount", "--propagation", "private", *cmd]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=SUPERVISOR_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        _kill_leftover_daemon(spec)
        pytest.fail(f"supervisor did not finish within {SUPERVISOR_TIMEOUT}s")
    finally:
        if not namespace and mount_fstype(spec["mnt"]) is not None:
            subprocess.run(["fusermount3", "-u", spec["mnt"]], capture_output=True)
            if mount_fstype(spec["mnt"]) is not None:
                subprocess.run(["umount", "-l", spec["mnt"]], capture_output=True)
    assert proc.returncode == 0, f"supervisor failed ({proc.returncode}): {stderr}"
    report = json.loads(stdout.strip().splitlines()[-1])
    assert not report["events"], report
    return report


def _kill_leftover_daemon(spec):
    """After a hung supervisor: the daemon it recorded, if it is still the one on our mount."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(pathlib.Path(spec["pidfile"]).read_text())
        if spec["mnt"] in (_proc_argv(pid) or [])[1:]:
            os.kill(pid, signal.SIGKILL)


def assert_served_and_ended(report, expect_write=True):
    assert report["mount_rc"] == 0, report
    assert report["fstype"] == "fuse.ovlfs", report
    d = report.get("daemon")
    assert d, f"no ovlfs daemon found for the mount: {report}"
    assert d["exe_is_binary"], f"the daemon is not the binary under test: {d}"
    assert report["listing"] == ["a", "b"], report
    assert report["reads"] == {"a": "from l1", "b": "from l2"}, report
    if expect_write:
        assert report["writes"] == {"new": "ok"}, report
    assert report["unmount_rc"] == 0, report
    assert report["exit_status"] == 0, f"daemon exit status {report['exit_status']}: {report}"
    assert report["mounted_after"] is None, report


@pytest.fixture
def env(tmp_path):
    d = {name: tmp_path / name for name in ("l1", "l2", "upper", "work", "mnt")}
    build_layer(d["l1"], {"a": "from l1"})
    build_layer(d["l2"], {"a": "from l2", "b": "from l2"})
    for name in ("upper", "work", "mnt"):
        d[name].mkdir()
    d["opts"] = f"lowerdir={d['l1']}:{d['l2']},upperdir={d['upper']},workdir={d['work']}"
    d["tmpbin"] = tmp_path / "bin"
    d["tmpbin"].mkdir()
    (d["tmpbin"] / "ovlfs").symlink_to(ovlfs_binary().resolve())
    return d


def _shadow_dir():
    for d in SHADOW_DIRS:
        if os.path.isdir(d):
            return d
    pytest.skip(f"none of {SHADOW_DIRS} exists to shadow in a private mount namespace")


def _needs_unshare():
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is missing (util-linux)")
    if subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot make a private mount namespace here")


# --------------------------------------------------------------------------- install

def _make(*args):
    # -o: install what is built; never rebuild it here (others may be editing the sources).
    binary = ovlfs_binary().resolve()
    cmd = ["make", "-s", "-C", str(REPO), f"BUILD={binary.parent}", "-o", str(binary), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=STEP_TIMEOUT)
    assert r.returncode == 0, f"{cmd} failed: {r.stdout}{r.stderr}"


def _files_under(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


@pytest.mark.parametrize("prefix", [None, "/usr"])
def test_install_and_uninstall(tmp_path, prefix):
    if shutil.which("make") is None:
        pytest.skip("make is missing")
    dest = tmp_path / "dest"
    args = [f"DESTDIR={dest}"] + ([f"PREFIX={prefix}"] if prefix else [])
    root = (prefix or "/usr/local").lstrip("/")
    _make("install", *args)
    assert _files_under(dest) == [f"{root}/bin/ovlfs", f"{root}/share/man/man1/ovlfs.1"]
    binary = dest / root / "bin" / "ovlfs"
    assert binary.stat().st_mode & 0o777 == 0o755
    assert binary.read_bytes() == ovlfs_binary().read_bytes()
    page = dest / root / "share" / "man" / "man1" / "ovlfs.1"
    assert page.stat().st_mode & 0o777 == 0o644
    r = subprocess.run([str(binary), "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("ovlfs "), r
    _make("uninstall", *args)
    assert _files_under(dest) == [], "uninstall left files behind"


def _option_names():
    """Every option name the parser knows, from its table in src/cli/option_table.c."""
    src = (REPO / "src" / "cli" / "option_table.c").read_text()
    table = src[src.index("opt_table[] = {"):]
    table = table[:table.index("};")]
    return sorted(set(re.findall(r'\{"([a-z_0-9]+)",', table)))


def _subcommand_options():
    """Every option `ovlfs export` and `ovlfs diff` accept, from their parsers."""
    found = set()
    for name in ("export.c", "diff.c"):
        src = (REPO / "src" / "tools" / name).read_text()
        found |= set(re.findall(r'!strcmp\(a, "(--?[a-z][a-z-]*)"\)', src))
    return sorted(found)


def test_man_page_renders_and_covers_every_option():
    page = REPO / "doc" / "ovlfs.1"
    if shutil.which("groff") is None:
        pytest.skip("groff is missing (apt-get install groff-base)")
    r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(page)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr.strip(), f"groff warnings: {r.stderr}"
    # One line per paragraph, no hyphenation, no overstriking: plain words to look for.
    text = subprocess.run(["groff", "-man", "-Tutf8", "-rLL=4000n", "-rHY=0", "-P-cbou",
                           str(page)], capture_output=True, check=True).stdout.decode()
    flat = re.sub(r"\s+", " ", text.replace("\u2010", "-").replace("\u2212", "-"))
    missing = [o for o in _option_names() if o not in flat.replace(" ", "")]
    assert not missing, f"options not in the man page: {missing}"
    subopts = _subcommand_options()
    assert {"-o", "-z"} <= set(subopts), subopts
    missing = [o for o in subopts if o not in flat]
    assert not missing, f"export/diff options not in the man page: {missing}"
    for must in ("EXIT STATUS", "EXAMPLES", "ON-DISK FORMAT", "fuse.ovlfs", "fstab",
                 "trusted.overlay.opaque", "trusted.overlay.overlay", "ENOTCONN", "umount -l",
                 "fusermount3 -u", "syslog", "ovlfs export", "ovlfs diff", ".wh..wh..opq",
                 "A /path", "C /path", "D /path", "SCHILY.xattr"):
        assert must in flat, f"{must!r} missing from the man page"
    if shutil.which("man"):
        r = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True,
                           env=dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="80"))
        assert r.returncode == 0 and "lowerdir" in r.stdout, r.stderr


# --------------------------------------------------------------------------- mounting

@needs_fuse
def test_mount_fuse3_finds_ovlfs_in_path(env, tmp_path):
    """mount.fuse3 as mount(8) runs it, with the built binary found through PATH."""
    if shutil.which("mount.fuse3") is None:
        pytest.skip("mount.fuse3 is missing (fuse3)")
    mnt = str(env["mnt"])
    report = run_supervised({
        "mnt": mnt,
        "mount": ["mount.fuse3", "ovlfs", mnt, "-t", "ovlfs", "-o", "rw," + env["opts"]],
        "env": {"PATH": f"{env['tmpbin']}:{os.environ.get('PATH', '/usr/bin:/bin')}"},
        "unmount": ["umount", mnt],
        "read": ["a", "b"], "write": {"new": "through mount.fuse3"},
    }, tmp_path)
    assert_served_and_ended(report)
    assert report["daemon"]["argv"][:2] == ["ovlfs", "ovlfs"], report["daemon"]
    assert (env["upper"] / "new").read_text() == "through mount.fuse3"


@needs_fuse
@pytest.mark.parametrize("extra", ["", ",nosuid,nodev,noatime,sync"])
def test_mount_t_fuse_ovlfs(env, tmp_path, extra):
    """mount -t fuse.ovlfs ovlfs MNT -o ... then umount MNT: the daemon exits 0."""
    _needs_unshare()
    mnt = str(env["mnt"])
    report = run_supervised({
        "mnt": mnt,
        "binds": [[str(env["tmpbin"]), _shadow_dir()]],
        "mount": ["mount", "-t", "fuse.ovlfs", "ovlfs", mnt, "-o", env["opts"] + extra],
        "unmount": ["umount", mnt],
        "read": ["a", "b"], "write": {"new": "through mount -t"},
    }, tmp_path, namespace=True)
    assert_served_and_ended(report)
    line = report["mount_line"][-1].split()
    assert line[0] == "ovlfs" and line[2] == "fuse.ovlfs", line
    for flag in filter(None, extra.split(",")):
        if flag != "sync":  # not shown by every kernel for fuse
            assert flag in line[3].split(","), (flag, line)
    assert (env["upper"] / "new").read_text() == "through mount -t"


@needs_fuse
def test_mount_t_fuse_ovlfs_read_only(env, tmp_path):
    _needs_unshare()
    mnt = str(env["mnt"])
    report = run_supervised({
        "mnt": mnt,
        "binds": [[str(env["tmpbin"]), _shadow_dir()]],
        "mount": ["mount", "-t", "fuse.ovlfs", "-o", "ro," + env["opts"], "ovlfs", mnt],
        "unmount": ["umount", mnt],
        "read": ["a", "b"], "write": {"new": "refused"},
    }, tmp_path, namespace=True)
    assert report["writes"] == {"new": "EROFS"}, report
    assert_served_and_ended(report, expect_write=False)
    assert not (env["upper"] / "new").exists()


@needs_fuse
def test_mount_t_bad_option_is_reported(env, tmp_path):
    """ovlfs's one-line complaint reaches mount(8)'s caller, and nothing is mounted."""
    _needs_unshare()
    mnt = str(env["mnt"])
    report = run_supervised({
        "mnt": mnt,
        "binds": [[str(env["tmpbin"]), _shadow_dir()]],
        "mount": ["mount", "-t", "fuse.ovlfs", "ovlfs", mnt, "-o", env["opts"] + ",frobnicate"],
        "unmount": ["umount", mnt],
    }, tmp_path, namespace=True)
    assert report["mount_rc"] != 0, report
    assert "ovlfs: unknown option 'frobnicate'" in report["mount_stderr"], report
    assert "daemon" not in report


def _mount_supports_fstab_option():
    r = subprocess.run(["mount", "--help"], capture_output=True, text=True)
    return "--fstab" in r.stdout


@needs_fuse
@pytest.mark.parametrize("fstab_opts", ["{opts}", "defaults,noauto,nofail,x-systemd.automount,"
                                        "comment=ovlfs,{opts},nosuid"])
def test_fstab_line(env, tmp_path, fstab_opts):
    """An fstab line (a private fstab through mount -T), mounted as `mount MNT`."""
    _needs_unshare()
    if not _mount_supports_fstab_option():
        pytest.skip("this mount(8) has no -T/--fstab to use a temporary fstab")
    mnt = str(env["mnt"])
    fstab = tmp_path / "fstab"
    fstab.write_text("# ovlfs test\n"
                     f"ovlfs {mnt} fuse.ovlfs {fstab_opts.format(opts=env['opts'])} 0 0\n")
    report = run_supervised({
        "mnt": mnt,
        "binds": [[str(env["tmpbin"]), _shadow_dir()]],
        "mount": ["mount", "-T", str(fstab), mnt],
        "unmount": ["umount", mnt],
        "read": ["a", "b"], "write": {"new": "through fstab"},
    }, tmp_path, namespace=True)
    assert_served_and_ended(report)
    assert (env["upper"] / "new").read_text() == "through fstab"


@needs_fuse
def test_daemonized_serves_and_unmounts(env, tmp_path):
    """Without -f ovlfs detaches (own session, stdio on /dev/null), the starting command
    exits 0 once mounted, and fusermount3 -u ends the daemon with status 0."""
    mnt = str(env["mnt"])
    report = run_supervised({
        "mnt": mnt,
        "mount": [str(ovlfs_binary()), "-o", env["opts"], mnt],
        "unmount": ["fusermount3", "-u", mnt],
        "read": ["a", "b"], "write": {"new": "daemonized"},
    }, tmp_path)
    assert report["mount_stdout"] == "" and report["mount_stderr"] == "", report
    assert report["daemon"]["own_session"], report["daemon"]
    assert report["daemon"]["stderr"] == "/dev/null", report["daemon"]
    assert_served_and_ended(report)
    assert (env["upper"] / "new").read_text() == "daemonized"
    assert not is_fuse_mount(mnt)


@needs_fuse
def test_daemonized_logs_to_syslog(env, tmp_path):
    """A daemonized ovlfs writes its notes to syslog (facility daemon, tag ovlfs[pid]). In a
    private mount namespace /dev is replaced by a directory with /dev/null, /dev/fuse and a
    /dev/log socket that the supervisor reads, standing in for the syslog daemon."""
    _needs_unshare()
    mnt = str(env["mnt"])
    dev = tmp_path / "dev"
    dev.mkdir()
    binds = []
    for node in ("null", "fuse", "zero", "urandom"):
        (dev / node).touch()
        binds.append([f"/dev/{node}", str(dev / node)])
    binds.append([str(dev), "/dev"])
    report = run_supervised({
        "mnt": mnt,
        "syslog_socket": str(dev / "log"),
        "binds": binds,
        "mount": [str(ovlfs_binary()), "-o", env["opts"], mnt],
        "unmount": ["umount", mnt],
        "read": ["a", "b"], "write": {"new": "logged"},
    }, tmp_path, namespace=True)
    assert_served_and_ended(report)
    msgs, tag = report["syslog"], f"ovlfs[{report['daemon']['pid']}]: "
    # <30>: facility daemon (3) * 8 + priority info (6); the tag carries the daemon's pid.
    assert any(m.startswith("<30>") and f"{tag}mounted on {mnt}" in m for m in msgs), msgs
    assert any(m.startswith("<30>") and f"{tag}{mnt} was unmounted" in m for m in msgs), msgs
    assert all(tag in m for m in msgs), msgs


@needs_fuse
def test_foreground_debug_traces_requests(env):
    """-o debug (as -d) traces every request on stderr in the foreground."""
    with mount_ovlfs([env["l1"], env["l2"]], env["upper"], env["work"], ["debug"],
                     mnt=env["mnt"]) as m:
        assert (m / "a").read_text() == "from l1"
        os.listdir(m)
        time.sleep(0.2)
        log = m.log()
    for op in ("INIT", "LOOKUP", "OPEN", "READ", "READDIR"):
        assert f"opcode: {op}" in log, f"no {op} traced in:\n{log[-3000:]}"


@needs_fuse
def test_foreground_is_quiet(env):
    """Without -d a foreground ovlfs writes nothing on a normal mount and unmount."""
    with mount_ovlfs([env["l1"], env["l2"]], env["upper"], env["work"], mnt=env["mnt"]) as m:
        assert (m / "a").read_text() == "from l1"
        (m / "new").write_text("x")
        time.sleep(0.2)
        assert m.log() == ""


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "supervise":
    supervise(json.loads(sys.argv[2]))
