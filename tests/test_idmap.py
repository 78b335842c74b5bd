"""Ownership options, as fuse-overlayfs has them: uidmapping=/gidmapping= (on-disk IDs shown
shifted through the mount, and shifted back when stored), squash_to_root/uid/gid (one owner
shown for everything) and xattr_permissions=1|2 (owner, mode and type kept in an override
xattr instead of the inode). Every check looks at both sides: what the mount shows and what
the upper layer holds on disk."""
import errno
import json
import os
import stat
import subprocess

import pytest

import helpers
import write_helpers as wh

pytestmark = helpers.needs_fuse

# A container-like mapping: disk 1000 is shown as 0, disk 100000.. as 1.. (and the same for
# groups with 2000 and 200000).
UIDMAP = "uidmapping=1000:0:1:100000:1:65536"
GIDMAP = "gidmapping=2000:0:1:200000:1:65536"
MAPPED = (UIDMAP, GIDMAP)

CONTAINERS = "user.containers.override_stat"
PRIVILEGED = "security.fuseoverlayfs.override_stat"
LEGACY = "user.fuseoverlayfs.override_stat"


def owner(path):
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def xattr(path, name):
    try:
        return os.getxattr(path, name, follow_symlinks=False).decode()
    except OSError as e:
        if e.errno == errno.ENODATA:
            return None
        raise


LOWER = {
    "mapped_root": helpers.File("disk 1000\n", uid=1000, gid=2000),
    "mapped_user": helpers.File("disk 100005\n", uid=100005, gid=200007, mode=0o600),
    "unmapped": helpers.File("disk 0\n", uid=0, gid=0),
    "dir": helpers.Dir(uid=100000, gid=200000, children={
        "inner": helpers.File("x\n", uid=100001, gid=200001)}),
    "link": helpers.Symlink("mapped_root", uid=100002, gid=200002),
}


# --------------------------------------------------------------------------- uid/gid mapping

def test_mapping_shows_shifted_ids(layers):
    ls = layers([LOWER])
    with ls.ovlfs(extra_opts=MAPPED) as mnt:
        assert owner(mnt / "mapped_root") == (0, 0)
        assert owner(mnt / "mapped_user") == (6, 8)
        assert owner(mnt / "unmapped") == (65534, 65534)  # outside every range
        assert owner(mnt / "dir") == (1, 1)
        assert owner(mnt / "dir" / "inner") == (2, 2)
        assert owner(mnt / "link") == (3, 3)
        # The upper root (owned by 0 on disk) is unmapped too.
        assert owner(mnt) == (65534, 65534)


def test_mapping_same_through_readdir(layers):
    """A listing (readdirplus hands attributes over with the names) shows what lookup shows."""
    ls = layers([LOWER])
    with ls.ovlfs(extra_opts=MAPPED) as mnt:
        listed = {e.name: (e.stat(follow_symlinks=False).st_uid,
                           e.stat(follow_symlinks=False).st_gid) for e in os.scandir(mnt)}
        looked_up = {name: owner(mnt / name) for name in os.listdir(mnt)}
        assert listed == looked_up
        assert listed["mapped_user"] == (6, 8)
        r = subprocess.run(["ls", "-ln", str(mnt / "dir")], capture_output=True, text=True)
        assert r.returncode == 0 and " 2 2 " in r.stdout.split("\n")[1], r.stdout


def test_fuse_overlayfs_man_page_example(layers):
    """fuse-overlayfs(1)'s own example: files stored as 0:0 and 1:1, mounted with the
    namespace's uid_map line by line, show as the host IDs 1000 and 110000."""
    ls = layers([{"a": helpers.File("a", uid=0, gid=0), "b": helpers.File("b", uid=1, gid=1)}])
    opts = ("uidmapping=0:1000:1:1:110000:65536", "gidmapping=0:1000:1:1:110000:65536")
    with ls.ovlfs(extra_opts=opts) as mnt:
        assert owner(mnt / "a") == (1000, 1000)
        assert owner(mnt / "b") == (110000, 110000)


def test_new_objects_stored_with_mapped_ids(layers):
    ls = layers([LOWER])
    with ls.ovlfs(extra_opts=MAPPED) as mnt:
        (mnt / "f").write_text("new\n")
        os.mkdir(mnt / "d")
        os.symlink("f", mnt / "s")
        os.mkfifo(mnt / "p")
        for name in ("f", "d", "s", "p"):
            assert owner(mnt / name) == (0, 0), name  # the caller, root, as shown
            assert owner(ls.upper / name) == (1000, 2000), name  # root as stored


def test_new_objects_of_a_mapped_user(layers):
    """An unprivileged caller's IDs are mapped too, and the kernel's permission checks use
    the shown owner: the creator may read its 0600 file, another user may not."""
    with wh.public_dir() as pub:
        ls = helpers.build_layers(pub / "set", [{"pub": helpers.Dir(mode=0o777,
                                                                    uid=1000, gid=2000)}])
        with ls.ovlfs(mnt=pub / "mnt", extra_opts=MAPPED) as mnt:
            assert owner(mnt / "pub") == (0, 0)
            r = wh.as_user(1000, 1000, "/usr/bin/python3", "-c",
                           "import os,sys; fd=os.open(sys.argv[1], os.O_CREAT|os.O_WRONLY, "
                           "0o600); os.write(fd, b'mine'); os.close(fd)",
                           str(mnt / "pub" / "mine"))
            assert r.returncode == 0, r.stderr
            assert owner(mnt / "pub" / "mine") == (1000, 1000)
            assert owner(ls.upper / "pub" / "mine") == (100999, 200999)
            read = "import sys; print(open(sys.argv[1]).read())"
            r = wh.as_user(1000, 1000, "/usr/bin/python3", "-c", read, str(mnt / "pub" / "mine"))
            assert r.returncode == 0 and r.stdout.strip() == "mine", r.stderr
            r = wh.as_user(1001, 1001, "/usr/bin/python3", "-c", read, str(mnt / "pub" / "mine"))
            assert r.returncode != 0 and "PermissionError" in r.stderr


def test_unmapped_caller_stores_overflow_id(layers):
    """A caller outside the mapping (here root, with only 100000.. mapped) still creates
    objects, stored with the overflow ID, as fuse-overlayfs does."""
    ls = layers([{}])
    with ls.ovlfs(extra_opts=("uidmapping=100000:1:10", "gidmapping=200000:1:10")) as mnt:
        (mnt / "f").write_text("x")
        assert owner(ls.upper / "f") == (65534, 65534)
        assert owner(mnt / "f") == (65534, 65534)


def test_chown_maps_to_disk(layers):
    ls = layers([LOWER])
    with ls.ovlfs(extra_opts=MAPPED) as mnt:
        os.chown(mnt / "mapped_root", 5, 6)
        assert owner(mnt / "mapped_root") == (5, 6)
        assert owner(ls.upper / "mapped_root") == (100004, 200005)
        os.chown(mnt / "link", 0, 0, follow_symlinks=False)
        assert owner(ls.upper / "link") == (1000, 2000)
        os.chown(mnt / "dir", -1, 9)  # group only
        assert owner(ls.upper / "dir") == (100000, 200008)


def test_chown_to_unmapped_id_is_einval(layers):
    """An ID with no place on disk cannot be stored: EINVAL, as the kernel answers for an ID
    its user namespace does not map (fuse-overlayfs would store 65534 instead)."""
    ls = layers([LOWER])
    with ls.ovlfs(extra_opts=MAPPED) as mnt:
        for uid, gid in ((70000, -1), (-1, 70000), (65537, 0)):
            with pytest.raises(OSError) as e:
                os.chown(mnt / "mapped_root", uid, gid)
            assert e.value.errno == errno.EINVAL, (uid, gid)
        assert owner(mnt / "mapped_root") == (0, 0)
        assert not os.path.lexists(ls.upper / "mapped_root")  # nothing copied up


def test_copy_up_keeps_disk_ids(layers):
    """Mapping applies only at the mount's boundary: a copy-up copies on-disk owners as
    they are."""
    ls = layers([LOWER])
    with ls.ovlfs(extra_opts=MAPPED) as mnt:
        os.chmod(mnt / "mapped_user", 0o640)
        with open(mnt / "dir" / "inner", "a") as f:
            f.write("more\n")
        assert owner(ls.upper / "mapped_user") == (100005, 200007)
        assert owner(ls.upper / "dir") == (100000, 200000)
        assert owner(ls.upper / "dir" / "inner") == (100001, 200001)
        assert owner(mnt / "mapped_user") == (6, 8)


def test_mapping_uid_only(layers):
    """uidmapping alone leaves groups as they are on disk."""
    ls = layers([LOWER])
    with ls.ovlfs(extra_opts=(UIDMAP,)) as mnt:
        assert owner(mnt / "mapped_user") == (6, 200007)
        (mnt / "f").write_text("x")
        assert owner(ls.upper / "f") == (1000, 0)


# --------------------------------------------------------------------------- squash

@pytest.mark.parametrize("opts,shown", [
    (("squash_to_root",), (0, 0)),
    (("squash_to_uid=7", "squash_to_gid=8"), (7, 8)),
    (("squash_to_uid=7",), (7, None)),  # groups as on disk
    (("squash_to_root", "squash_to_gid=8"), (0, 8)),  # squash_to_gid wins for groups
])
def test_squash_shows_one_owner(layers, opts, shown):
    ls = layers([LOWER])
    with ls.ovlfs(extra_opts=opts) as mnt:
        for name in ("mapped_root", "mapped_user", "unmapped", "dir", "dir/inner", "link"):
            uid, gid = owner(mnt / name)
            disk_gid = os.lstat(ls.lowers[0] / name).st_gid
            assert (uid, gid) == (shown[0], disk_gid if shown[1] is None else shown[1]), name


def test_squash_chown_succeeds_and_changes_nothing_shown(layers):
    ls = layers([LOWER])
    with ls.ovlfs(extra_opts=("squash_to_root",) + MAPPED) as mnt:
        os.chown(mnt / "mapped_user", 5, 5)
        assert owner(mnt / "mapped_user") == (0, 0)
        os.chown(mnt / "unmapped", 70000, 70000)  # unmapped: still no error when squashed
        assert owner(mnt / "unmapped") == (0, 0)
        # New objects still belong to the caller on disk.
        (mnt / "f").write_text("x")
        assert owner(ls.upper / "f") == (1000, 2000)
        assert owner(mnt / "f") == (0, 0)


# --------------------------------------------------------------------------- xattr_permissions

@pytest.mark.parametrize("level,name", [(1, PRIVILEGED), (2, CONTAINERS)])
def test_xattr_permissions_new_objects(layers, level, name):
    ls = layers([{}])
    with ls.ovlfs(extra_opts=(f"xattr_permissions={level}",)) as mnt:
        assert xattr(ls.upper, name) == "0:0:0755:dir"  # the upper root is marked
        fd = os.open(mnt / "f", os.O_CREAT | os.O_WRONLY, 0o640)
        os.close(fd)
        os.mkdir(mnt / "d", 0o750)
        assert xattr(ls.upper / "f", name) == "0:0:0640:file"
        assert xattr(ls.upper / "d", name) == "0:0:0750:dir"
        # The backing objects stay open to the daemon; the mount shows the xattr's mode.
        assert os.lstat(ls.upper / "f").st_mode & 0o7777 == 0o755
        assert os.lstat(mnt / "f").st_mode & 0o7777 == 0o640
        assert os.lstat(mnt / "d").st_mode & 0o7777 == 0o750


@pytest.mark.parametrize("level,name", [(1, PRIVILEGED), (2, CONTAINERS)])
def test_xattr_permissions_chmod_chown_go_to_the_xattr(layers, level, name):
    ls = layers([{}], upper={"f": helpers.File("x", mode=0o644)})
    with ls.ovlfs(extra_opts=(f"xattr_permissions={level}",)) as mnt:
        os.chown(mnt / "f", 5, 6)
        os.chmod(mnt / "f", 0o4711)  # after: a chown clears setuid
        st = os.lstat(mnt / "f")
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (5, 6, 0o4711)
        disk = os.lstat(ls.upper / "f")
        assert (disk.st_uid, disk.st_gid, disk.st_mode & 0o7777) == (0, 0, 0o644)
        assert xattr(ls.upper / "f", name) == "5:6:4711:file"


def test_xattr_permissions_kernel_checks_the_shown_owner(layers):
    """The backing file is root's and 0755; what the kernel checks is the override."""
    with wh.public_dir() as pub:
        ls = helpers.build_layers(pub / "set", [{}])
        with ls.ovlfs(mnt=pub / "mnt", extra_opts=("xattr_permissions=2",)) as mnt:
            (mnt / "f").write_text("secret\n")
            os.chown(mnt / "f", 1000, 1000)
            os.chmod(mnt / "f", 0o600)
            append = "import sys; open(sys.argv[1], 'a').write('more\\n')"
            r = wh.as_user(1000, 1000, "/usr/bin/python3", "-c", append, str(mnt / "f"))
            assert r.returncode == 0, r.stderr
            r = wh.as_user(1001, 1001, "/usr/bin/python3", "-c", append, str(mnt / "f"))
            assert r.returncode != 0 and "PermissionError" in r.stderr
            assert (ls.upper / "f").read_text() == "secret\nmore\n"
            assert owner(ls.upper / "f") == (0, 0)


def test_xattr_permissions_hidden_through_the_mount(layers):
    ls = layers([{}])
    with ls.ovlfs(extra_opts=("xattr_permissions=2",)) as mnt:
        (mnt / "f").write_text("x")
        os.setxattr(mnt / "f", "user.note", b"kept")
        assert os.listxattr(mnt / "f") == ["user.note"]
        for name in (CONTAINERS, LEGACY, PRIVILEGED):
            with pytest.raises(OSError) as e:
                os.getxattr(mnt / "f", name)
            assert e.value.errno == errno.ENODATA, name
            with pytest.raises(OSError) as e:
                os.setxattr(mnt / "f", name, b"1:1:0777")
            # user.fuseoverlayfs.* as a whole is fuse-overlayfs's private space (formats.c)
            assert e.value.errno == (errno.EOPNOTSUPP if name == LEGACY else errno.EPERM), name
        assert xattr(ls.upper / "f", CONTAINERS) == "0:0:0644:file"


def test_xattr_permissions_reads_lower_overrides(layers):
    """A lower layer marked at its root is read with its override, in any of the three
    spellings (the legacy user.fuseoverlayfs one included); copy-up carries the override
    to the upper layer's xattr, and the copy is not chowned."""
    root_mark = {CONTAINERS: b"0:0:0755:dir"}
    ls = layers([
        {"a": helpers.File("a", xattrs={CONTAINERS: b"7:8:0604:file"}),
         "plain": helpers.File("p", uid=3, gid=4, mode=0o640)},
        {"b": helpers.File("b", xattrs={LEGACY: b"9:10:600"})},
    ])
    os.setxattr(ls.lowers[0], CONTAINERS, root_mark[CONTAINERS])
    os.setxattr(ls.lowers[1], LEGACY, b"0:0:755")
    with ls.ovlfs(extra_opts=("xattr_permissions=2",)) as mnt:
        st = os.lstat(mnt / "a")
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (7, 8, 0o604)
        st = os.lstat(mnt / "b")
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (9, 10, 0o600)
        assert owner(mnt / "plain") == (3, 4)  # no override on it: as on disk
        os.utime(mnt / "a", (1, 1))
        os.utime(mnt / "b", (1, 1))
        os.utime(mnt / "plain", (1, 1))
        assert xattr(ls.upper / "a", CONTAINERS) == "7:8:0604:file"
        assert xattr(ls.upper / "b", CONTAINERS) == "9:10:0600:file"
        assert xattr(ls.upper / "plain", CONTAINERS) == "3:4:0640:file"
        assert owner(ls.upper / "plain") == (0, 0)
        st = os.lstat(mnt / "b")
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (9, 10, 0o600)


def test_lower_override_without_the_option(layers):
    """As fuse-overlayfs: a lower layer marked at its root is read with its overrides even
    when xattr_permissions is not given."""
    ls = layers([{"a": helpers.File("a", xattrs={CONTAINERS: b"7:8:0604:file"})}])
    os.setxattr(ls.lowers[0], CONTAINERS, b"0:0:0755:dir")
    with ls.ovlfs() as mnt:
        st = os.lstat(mnt / "a")
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (7, 8, 0o604)
        assert CONTAINERS not in os.listxattr(mnt / "a")


def test_xattr_permissions_mknod_device_as_file(layers):
    """A device becomes a regular file carrying its type: no mknod privilege is needed."""
    ls = layers([{}])
    with ls.ovlfs(extra_opts=("xattr_permissions=2", "nodev")) as mnt:
        os.mknod(mnt / "null", stat.S_IFCHR | 0o640, os.makedev(1, 3))
        os.mknod(mnt / "blk", stat.S_IFBLK | 0o600, os.makedev(7, 1))
        st = os.lstat(mnt / "null")
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
        assert st.st_mode & 0o7777 == 0o640
        st = os.lstat(mnt / "blk")
        assert stat.S_ISBLK(st.st_mode) and st.st_rdev == os.makedev(7, 1)
        assert stat.S_ISREG(os.lstat(ls.upper / "null").st_mode)
        assert xattr(ls.upper / "null", CONTAINERS) == "0:0:0640:char-1-3"
        assert xattr(ls.upper / "blk", CONTAINERS) == "0:0:0600:block-7-1"
    with ls.ovlfs(extra_opts=("xattr_permissions=2",)) as mnt:  # after a remount too
        assert stat.S_ISCHR(os.lstat(mnt / "null").st_mode)


def test_xattr_permissions_symlink_level1(layers):
    """security.* xattrs go on any object (user.* ones only on files and directories)."""
    ls = layers([{}])
    with ls.ovlfs(extra_opts=("xattr_permissions=1",)) as mnt:
        os.symlink("target", mnt / "s")
        os.chown(mnt / "s", 4, 5, follow_symlinks=False)
        assert owner(mnt / "s") == (4, 5)
        assert owner(ls.upper / "s") == (0, 0)
        assert xattr(ls.upper / "s", PRIVILEGED) == "4:5:0777:symlink"
        assert os.readlink(mnt / "s") == "target"


def test_xattr_permissions_with_mapping(layers):
    """Override xattrs hold disk-side IDs: the mapping applies on top of them."""
    ls = layers([{}], upper={"f": helpers.File("x", xattrs={CONTAINERS: b"100004:200004:0600"})})
    with ls.ovlfs(extra_opts=("xattr_permissions=2",) + MAPPED) as mnt:
        assert owner(mnt / "f") == (5, 5)
        os.chown(mnt / "f", 0, 0)
        assert xattr(ls.upper / "f", CONTAINERS) == "1000:2000:0600:file"
        (mnt / "g").write_text("y")
        assert xattr(ls.upper / "g", CONTAINERS) == "1000:2000:0644:file"
        assert owner(mnt / "g") == (0, 0)


# --------------------------------------------------------------------------- command line

@pytest.mark.parametrize("opt,words", [
    ("uidmapping=0:1000", "uidmapping"),
    ("gidmapping=0:0:10:5:100:1", "overlaps"),
    ("uidmapping=0:1:0", "empty"),
    ("squash_to_uid=x", "squash_to_uid"),
    ("xattr_permissions=5", "xattr_permissions"),
])
def test_bad_ownership_option_fails_before_mounting(tmp_path, opt, words):
    for d in ("l", "m"):
        (tmp_path / d).mkdir()
    r = subprocess.run([str(helpers.ovlfs_binary()), "-f", "-o",
                        f"lowerdir={tmp_path / 'l'},{opt}", str(tmp_path / "m")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert words in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not helpers.is_fuse_mount(tmp_path / "m")


def test_no_options_owners_as_on_disk(layers):
    """Without ownership options nothing changes: IDs and modes are the disk's, and the
    override names are ordinary xattrs."""
    ls = layers([LOWER])
    with ls.ovlfs() as mnt:
        assert owner(mnt / "mapped_user") == (100005, 200007)
        (mnt / "f").write_text("x")
        os.setxattr(mnt / "f", CONTAINERS, b"1:1:0777")
        assert owner(mnt / "f") == (0, 0)
        assert os.getxattr(mnt / "f", CONTAINERS) == b"1:1:0777"
        assert json.dumps(sorted(os.listxattr(mnt / "f"))) == json.dumps([CONTAINERS])
