# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""syscalls: the sealed executable copy (CVE-2019-5736 class) and the static-ELF check."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import subprocess

import pytest

from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc

CATATONIT = "/usr/bin/catatonit"
needs_catatonit = pytest.mark.skipif(not os.access(CATATONIT, os.X_OK), reason="catatonit is not installed")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@needs_catatonit
def test_sealed_copy_is_a_sealed_memfd_that_runs(tmp_path):
    copy = str(tmp_path / "catatonit")  # a copy: the test never touches the host's binary
    shutil.copy2(CATATONIT, copy)
    with open(copy, "rb") as f:
        data = f.read()
    fd = sc.sealed_copy(copy, "catatonit")
    try:
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        seals = fcntl.fcntl(fd, sc.F_GET_SEALS)
        assert seals & sc.SEALS == sc.SEALS
        assert os.readlink("/proc/self/fd/%d" % fd) == "/memfd:catatonit (deleted)"
        assert digest(os.pread(fd, len(data) + 1, 0)) == digest(data)
        # nothing can change it: not through the fd, not by reopening it for writing
        with pytest.raises(OSError) as exc:
            os.pwrite(fd, b"x", 0)
        assert exc.value.errno in (errno.EPERM, errno.EBADF)
        again = os.open("/proc/self/fd/%d" % fd, os.O_WRONLY)  # opening works; writing does not
        try:
            with pytest.raises(OSError) as exc:
                os.write(again, b"x")
            assert exc.value.errno == errno.EPERM
        finally:
            os.close(again)
        with pytest.raises(OSError):
            os.ftruncate(fd, 0)
        with pytest.raises(OSError):
            fcntl.fcntl(fd, sc.F_ADD_SEALS, 0)  # F_SEAL_SEAL: no more changes to the seals
        # fexecve of the copy runs catatonit (its version), through an fd without CLOEXEC in the child
        out = subprocess.run([CATATONIT, "-V"], capture_output=True, text=True, check=True).stdout
        child = subprocess.run(["/proc/self/fd/%d" % fd, "-V"], capture_output=True, text=True, pass_fds=(fd,), check=True)
        assert child.stdout == out and "catatonit" in out
    finally:
        os.close(fd)
    with open(copy, "rb") as f:
        assert digest(f.read()) == digest(data)


def test_sealed_copy_of_a_missing_file_names_it(tmp_path):
    with pytest.raises(sc.KernelError, match=r"sealed_copy\(.*nothing-here\) failed: .*ENOENT"):
        sc.sealed_copy(str(tmp_path / "nothing-here"), "x")


@needs_catatonit
def test_elf_is_static(tmp_path):
    text = tmp_path / "script"
    text.write_text("#!/bin/sh\n")
    for path, static in ((CATATONIT, True), ("/usr/bin/env", False), (str(text), False)):
        fd = os.open(path, os.O_RDONLY)
        try:
            assert sc.elf_is_static(fd) is static, path
        finally:
            os.close(fd)
