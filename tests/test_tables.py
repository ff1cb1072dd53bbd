"""Tables written for readers carry the precision their values have: HU to 0.1, dB to 0.01, other
numbers to three significant digits; the artifacts keep full precision."""

import csv
import io

from ctinv_utils.figures.tables import csv_text, markdown_table


def test_csv_rounds_to_what_a_reader_needs():
    rows = [{"kind": "low dose", "c": 0.9999999966994157, "hu": 34.865497003884684, "psnr": 27.123456, "n": 300,
             "missing": None, "small": 0.00012345, "big": 12345.678}]
    columns = [("kind", "image", ""), ("c", "contrast retained", ".2f"), ("hu", "NPW C+ (HU)", ".1f"),
               ("psnr", "PSNR (dB)", ".2f"), ("n", "iterations", ""), ("missing", "threshold (HU)", ".1f"),
               ("small", "fraction", ".3g"), ("big", "products", "g")]
    (header, row) = list(csv.reader(io.StringIO(csv_text(rows, columns))))
    assert header[2] == "NPW C+ (HU)"
    assert row == ["low dose", "1.00", "34.9", "27.12", "300", "", "0.000123", "12346"]
    assert "| low dose | 1.00 | 34.9 |" in markdown_table(rows, columns)
