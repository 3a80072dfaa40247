"""The bench's bookkeeping: every listed fault case exists, and JUnit outcomes are counted honestly."""

from __future__ import annotations

import ast
from pathlib import Path

from agentrl.reliability.faults import FAULT_CASES, parse_junit

REPO = Path(__file__).resolve().parents[2]


def test_every_fault_case_names_an_existing_test() -> None:
    for label, node in FAULT_CASES.items():
        file, name = node.split("::")
        tree = ast.parse((REPO / file).read_text())
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert name in names, f"{label}: {node} does not exist"


def test_junit_outcomes_skips_and_failures_are_not_survived(tmp_path: Path) -> None:
    xml = tmp_path / "r.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.a.test_x" name="test_ok"/>'
        '<testcase classname="tests.a.test_x" name="test_skip"><skipped message="no bwrap"/></testcase>'
        '<testcase classname="tests.a.test_x" name="test_bad"><failure message="boom"/></testcase>'
        '<testcase classname="tests.a.test_x" name="test_err"><error message="setup"/></testcase>'
        "</testsuite></testsuites>"
    )
    assert parse_junit(xml) == {
        "tests/a/test_x.py::test_ok": "passed",
        "tests/a/test_x.py::test_skip": "skipped",
        "tests/a/test_x.py::test_bad": "failed",
        "tests/a/test_x.py::test_err": "failed",
    }
