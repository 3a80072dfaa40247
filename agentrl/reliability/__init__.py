"""Reliability suite (issue 10): API fuzzing, auth audits, load with memory bounds, fault-case accounting.

The pieces are library functions so that `tests/reliability` (reduced sizes, asserted) and
`agentrl bench reliability` (full sizes, counted) drive exactly the same code. docs/reliability.md maps each
issue-10 case to the test that covers it.
"""
