"""The working directories' root: the start-up check, the setting's validation and the filesystem it is on."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from pydantic import ValidationError

from automation_executor.settings import ExecutorSettings
from automation_executor.workdirs import WorkdirRootError, check_root, filesystem_type


def test_check_root_leaves_the_root_as_it_found_it(tmp_path: Path) -> None:
    assert check_root(str(tmp_path)) == str(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_check_root_defaults_to_the_system_temporary_directory() -> None:
    assert check_root(None) == tempfile.gettempdir()


def test_a_missing_root_is_named_with_the_setting_and_the_reason(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(WorkdirRootError) as caught:
        check_root(str(missing))
    message = str(caught.value)
    assert "AUTOMATION_EXECUTOR_WORKDIR_ROOT" in message
    assert str(missing) in message
    assert "No such file or directory" in message


def test_a_file_as_root_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(WorkdirRootError, match="Not a directory"):
        check_root(str(file))


def test_the_setting_must_be_absolute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTOMATION_EXECUTOR_WORKDIR_ROOT", raising=False)
    with pytest.raises(ValidationError, match="must be an absolute path"):
        ExecutorSettings(env="development", executor_workdir_root="work")
    absolute = ExecutorSettings(env="development", executor_workdir_root="/var/lib/automation/work")
    assert absolute.executor_workdir_root == "/var/lib/automation/work"
    assert ExecutorSettings(env="development").executor_workdir_root is None


MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
23 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs devtmpfs rw
24 23 0:21 / /dev/shm rw,nosuid,nodev shared:3 - tmpfs tmpfs rw
25 22 0:30 / /var/lib/automation/work rw shared:4 - tmpfs tmpfs rw,size=524288k
26 22 0:31 / /mnt/with\\040space rw shared:5 - xfs /dev/vdb rw
28 22 0:33 / /mnt/back\\134slash\\134040 rw shared:7 - btrfs /dev/vdc rw
27 22 0:32 / /var/lib/automation/work rw shared:6 - overlay overlay rw
"""


@pytest.fixture
def mountinfo(tmp_path: Path) -> str:
    path = tmp_path / "mountinfo"
    path.write_text(MOUNTINFO)
    return str(path)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", "ext4"),
        ("/srv/data", "ext4"),
        ("/dev/shm", "tmpfs"),
        ("/dev/shm/x/y", "tmpfs"),
        ("/dev/shmem", "devtmpfs"),  # a mount point is a path prefix by components, not by characters
        ("/mnt/with space/runs", "xfs"),
        ("/mnt/back\\slash\\040/runs", "btrfs"),  # a backslash, and one before digits, escaped as \134
        ("/var/lib/automation/work/run-1", "overlay"),  # the later mount over the same point hides the earlier
    ],
)
def test_filesystem_type_takes_the_longest_mount_point(mountinfo: str, path: str, expected: str) -> None:
    assert filesystem_type(path, mountinfo) == expected


def test_filesystem_type_without_a_mount_table(tmp_path: Path) -> None:
    assert filesystem_type("/", str(tmp_path / "none")) is None


def test_filesystem_type_from_this_machines_mount_table() -> None:
    assert filesystem_type("/dev/shm") == "tmpfs"  # Linux's shared memory, on every machine the suite runs on
    assert filesystem_type("/proc/self") == "proc"
