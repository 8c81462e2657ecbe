"""The shared readers (`stages.lib.core.io`): the first byte that is not UTF-8 is named by record, column, text
line and absolute offset, also when its sequence straddles a read block; a ragged record by record and line; a
malformed JSON file in one line."""

from __future__ import annotations

import pytest

from stages.lib.core import io
from stages.lib.core.errors import InputError


@pytest.mark.parametrize("cut", [0, 1, 2])
def test_a_bad_sequence_across_a_read_block_is_named_at_its_true_offset(tmp_path, cut):
    head = b"id,text\n1,ok\n2,"
    bad = b"\xe2\x82\x28"  # a three-byte sequence whose third byte is wrong
    start = io._BLOCK - len(head) - cut  # the sequence begins `cut` bytes before the block boundary
    data = head + b"a" * start + bad + b" end\n"
    path = tmp_path / "essays.csv"
    path.write_bytes(data)
    offset = data.index(bad)
    with pytest.raises(InputError) as info:
        io.check_utf8_csv(path)
    assert str(info.value).startswith(
        f"{path}: not a readable UTF-8 CSV: record 3 (data row 2, line 3), column 'text', byte offset {offset}: "
        "byte 0xe2 is not UTF-8")


def test_a_valid_file_gives_its_sha256(tmp_path):
    import hashlib

    path = tmp_path / "ok.csv"
    path.write_bytes(("id,text\n" + "1,é\n" * 400_000).encode())
    assert io.check_utf8_csv(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_ragged_record_is_named_by_record_and_line(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text('id,text,prompt\n1,"two\nlines",p\n2,short\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"ragged\.csv: record 3 \(line 4\): 2 field\(s\), the header has 3"):
        io.check_csv_shape(path)


def test_malformed_json_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "decision.json"
    path.write_text('{"verdict": "accept",\n', encoding="utf-8")
    with pytest.raises(InputError) as info:
        io.read_json(path)
    assert str(info.value).startswith(f"{path}: not valid JSON (") and "\n" not in str(info.value)
    with pytest.raises(InputError, match="not found \\(run the decide stage\\)"):
        io.read_json(tmp_path / "absent.json", "decide")
