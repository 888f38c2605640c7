"""What kind of file system a watch folder is on, and whether the kernel can
still give it events.

Network file systems (NFS, SMB/CIFS, AFP, and FUSE mounts such as sshfs or
rclone) deliver no inotify/FSEvents events for changes made by other machines,
so a folder on one is polled. On Linux the file system type comes from
/proc/self/mountinfo; elsewhere from the output of mount(8).

`inotify_watches_exhausted()` answers whether one more inotify watch can be added:
watchdog silently skips sub-folders it cannot watch once
fs.inotify.max_user_watches is used up, so the watcher asks the kernel itself.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import subprocess
import sys
from pathlib import Path

from .libc import libc as c_library

NETWORK_TYPES = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "smb", "afpfs", "afp", "webdav", "davfs", "9p", "ceph", "glusterfs",
    "lustre", "gpfs", "ncpfs", "coda", "afs", "beegfs", "fuse", "fuseblk", "osxfuse", "macfuse", "fusefs",
})
"""Types whose events cannot be trusted; any "fuse.*" subtype counts too."""

WATCH_LIMIT_SYSCTL = "fs.inotify.max_user_watches"
INSTANCE_LIMIT_SYSCTL = "fs.inotify.max_user_instances"


def is_network(fstype: str | None) -> bool:
    if not fstype:
        return False
    fstype = fstype.lower()
    return fstype in NETWORK_TYPES or fstype.startswith(("fuse.", "fuse3."))


def filesystem_type(path: Path) -> str | None:
    """The type of the file system holding `path` ("ext4", "nfs4", "fuse.sshfs",
    "smbfs"), or None when it cannot be told."""
    try:
        resolved = path.resolve()
    except OSError:
        return None
    if sys.platform.startswith("linux"):
        try:
            text = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        return type_from_mountinfo(text, resolved)
    try:
        out = subprocess.run(["mount"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return type_from_mount_output(out, resolved)


def type_from_mountinfo(text: str, path: Path) -> str | None:
    """mountinfo(5): "... MOUNTPOINT OPTIONS [optional fields] - FSTYPE SOURCE ...";
    the deepest mount point above `path` wins (later lines stack on earlier)."""
    best: tuple[int, str] | None = None
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        mount_point = _unescape(fields[4])
        if _under(path, mount_point) and (best is None or len(mount_point) >= best[0]):
            best = (len(mount_point), right.split()[0])
    return None if best is None else best[1]


_MOUNT_LINE = re.compile(r"^.+? on (?P<point>.+?) \((?P<type>[^,)]+)")


def type_from_mount_output(text: str, path: Path) -> str | None:
    """macOS/BSD mount(8): "//user@nas/share on /Volumes/share (smbfs, nodev, ...)"."""
    best: tuple[int, str] | None = None
    for line in text.splitlines():
        match = _MOUNT_LINE.match(line)
        if match and _under(path, match["point"]) and (best is None or len(match["point"]) >= best[0]):
            best = (len(match["point"]), match["type"].strip())
    return None if best is None else best[1]


def _under(path: Path, mount_point: str) -> bool:
    return mount_point == "/" or path == Path(mount_point) or Path(mount_point) in path.parents


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


# ---- inotify ------------------------------------------------------------------

_IN_CLOEXEC = 0o2000000
_IN_ATTRIB = 0x00000004


def inotify_watches_exhausted(path: Path) -> bool:
    """True when inotify cannot watch one more folder because
    fs.inotify.max_user_watches is used up. Linux only; one watch is taken and
    given back at once. An instance that cannot be had (the instance limit)
    answers False: the watcher's own instance is already open."""
    libc = c_library()
    if libc is None or not hasattr(libc, "inotify_init1"):
        return False
    fd = libc.inotify_init1(_IN_CLOEXEC)
    if fd < 0:
        return False
    try:
        wd = libc.inotify_add_watch(fd, os.fsencode(path), _IN_ATTRIB)
        return wd < 0 and ctypes.get_errno() == errno.ENOSPC
    finally:
        os.close(fd)  # closing the instance removes its watch


def limit_sysctl(exc: OSError) -> str | None:
    """The sysctl behind an inotify error watchdog raised, None for other errors."""
    if exc.errno == errno.ENOSPC:
        return WATCH_LIMIT_SYSCTL
    if exc.errno == errno.EMFILE:
        return INSTANCE_LIMIT_SYSCTL
    return None
