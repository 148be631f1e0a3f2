"""``fracdet.fsutil``'s streaming writer: a file written in pieces appears whole or not at all."""

from __future__ import annotations

import pytest

from fracdet.fsutil import atomic_writer


def test_atomic_writer_renames_when_done_and_keeps_the_old_file_on_error(tmp_path):
    path = tmp_path / "sub" / "doc.json"
    with atomic_writer(path) as fh:
        fh.write("[1, ")
        assert not path.exists()  # nothing at the path while it is written
        fh.write('"é"]\n')
    assert path.read_bytes() == '[1, "é"]\n'.encode()
    with pytest.raises(RuntimeError, match="disk"), atomic_writer(path) as fh:
        fh.write("[2, ")
        raise RuntimeError("disk full")
    assert path.read_bytes() == '[1, "é"]\n'.encode()
    assert sorted(p.name for p in path.parent.iterdir()) == ["doc.json"]  # no temporary left
