"""A registries.conf of comments only (the file Debian's containers-common installs) is read without tomllib.

The shortcut must answer exactly what tomllib would: no entries for a document of blank and comment lines,
and tomllib's own error for anything it refuses, however comment-like (issue 19: ~11 ms of every warm verify).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tufoci.registry_config import RegistryConfigError, read_registries_conf

COMMENTS_ONLY = [
    b"",
    b"\n\n",
    b"# For more information on this configuration file, see containers-registries.conf(5).\n#\n",
    b"  \t# indented comment\r\n\r\n# another\n",
    "# unicode é ✓ comment\n".encode(),
    b"# no final newline",
]
REFUSED = [
    b"# a control character \x01 in a comment\n",
    b"# a DEL \x7f\n",
    b"# a lone CR \r in a comment\n",
    b"# not UTF-8 \xff\n",
    b"\xef\xbb\xbf# a byte-order mark first\n",
]
CONTENT = b'# comment\n[[registry]]\nprefix = "r.example:5000"\ninsecure = true\n'


@pytest.mark.parametrize("data", COMMENTS_ONLY)
def test_comment_only_files_have_no_entries_as_tomllib_reads_them(tmp_path: Path, data: bytes):
    assert tomllib.loads(data.decode()) == {}
    (tmp_path / "registries.conf").write_bytes(data)
    assert read_registries_conf(str(tmp_path / "registries.conf")) == ()


@pytest.mark.parametrize("data", REFUSED)
def test_what_tomllib_refuses_is_still_refused(tmp_path: Path, data: bytes):
    with pytest.raises((tomllib.TOMLDecodeError, UnicodeDecodeError)):
        tomllib.loads(data.decode())
    (tmp_path / "registries.conf").write_bytes(data)
    with pytest.raises(RegistryConfigError, match="not valid TOML"):
        read_registries_conf(str(tmp_path / "registries.conf"))


def test_a_file_with_content_is_read_with_tomllib(tmp_path: Path):
    (tmp_path / "registries.conf").write_bytes(CONTENT)
    (entry,) = read_registries_conf(str(tmp_path / "registries.conf"))
    assert (entry.prefix, entry.insecure) == ("r.example:5000", True)


def test_a_comment_only_file_does_not_import_tomllib(tmp_path: Path):
    path = tmp_path / "registries.conf"
    path.write_bytes(COMMENTS_ONLY[2] * 40)
    code = ("import sys; from tufoci.registry_config import read_registries_conf; "
            f"assert read_registries_conf({str(path)!r}) == (); print('tomllib' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"
