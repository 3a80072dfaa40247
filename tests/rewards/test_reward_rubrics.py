from pathlib import Path

import pytest

from agentrl.rewards.rubrics import RubricError, RubricKind, load_rubric_file, load_rubrics


def test_repo_rubrics_load_with_k2_texts(repo_rubrics):
    core = repo_rubrics.of_kind("core")
    presc = repo_rubrics.of_kind(RubricKind.prescriptive)
    assert [r.name for r in core] == [
        "Clarity and Relevance",
        "Conversational Fluency and Engagement",
        "Objective and Grounded Interaction",
    ]
    assert {r.name for r in presc} == {"Initial Praise", "Explicit Justification"}
    assert all(r.mandatory for r in presc)
    # Verbatim spot checks of K2 App. F (folded YAML must not alter the text).
    clarity = repo_rubrics.by_id("core.clarity_relevance").description
    assert clarity.startswith("Assesses the extent to which the response is succinct while fully addressing")
    assert clarity.endswith("the response should clearly offer a single, well-defined answer.")
    praise = repo_rubrics.by_id("prescriptive.initial_praise").description
    assert praise == (
        "Responses must not begin with compliments directed at the user or the question (e.g., \"That's a "
        'beautiful question", "Good question!").'
    )


def test_task_rubrics_scoped_to_their_tasks(repo_rubrics):
    for_refund = repo_rubrics.for_task("retail-refund-001")
    assert "task.example.refund_order" in {r.id for r in for_refund}
    assert len(for_refund) == 6
    other = repo_rubrics.for_task("weather-007", domain="weather")
    assert "task.example.refund_order" not in {r.id for r in other}
    assert {r.id for r in repo_rubrics.for_task(None, domain="retail")} >= {"task.example.refund_order"}


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_missing_field_names_file_field_and_line(tmp_path):
    p = _write(
        tmp_path,
        "bad.yaml",
        "rubrics:\n  - id: a.b\n    name: A\n    kind: core\n    description: x\n  - id: c.d\n    name: C\n    description: y\n",
    )
    with pytest.raises(RubricError) as e:
        load_rubric_file(p)
    msg = str(e.value)
    assert str(p) in msg and "rubrics[1](id=c.d).kind" in msg and "Field required" in msg
    assert f"{p}:6:" in msg  # the line of the offending list item


def test_bad_kind_and_weight_are_reported_with_lines(tmp_path):
    p = _write(
        tmp_path,
        "bad.yaml",
        "rubrics:\n  - id: a.b\n    name: A\n    kind: cosmic\n    weight: -1\n    description: x\n",
    )
    with pytest.raises(RubricError) as e:
        load_rubric_file(p)
    msg = str(e.value)
    assert f"{p}:4: field rubrics[0](id=a.b).kind" in msg
    assert f"{p}:5: field rubrics[0](id=a.b).weight" in msg


def test_unknown_field_and_malformed_yaml(tmp_path):
    p = _write(
        tmp_path,
        "x.yaml",
        "rubrics:\n  - id: a\n    name: A\n    kind: core\n    description: d\n    colour: red\n",
    )
    with pytest.raises(RubricError, match=r"colour.*Extra inputs are not permitted"):
        load_rubric_file(p)
    q = _write(tmp_path, "y.yaml", "rubrics:\n  - id: a\n   name: [unclosed\n")
    with pytest.raises(RubricError, match=r"y\.yaml:\d+: malformed YAML"):
        load_rubric_file(q)
    r = _write(tmp_path, "z.yaml", "- just a list\n")
    with pytest.raises(RubricError, match="top level must be a mapping"):
        load_rubric_file(r)


def test_duplicate_ids_across_files(tmp_path):
    body = "rubrics:\n  - id: dup.one\n    name: A\n    kind: core\n    description: d\n"
    _write(tmp_path, "a.yaml", body)
    _write(tmp_path, "b.yaml", body)
    with pytest.raises(
        RubricError, match=r"b\.yaml: field rubrics\.id: duplicate rubric id 'dup.one' \(first in .*a\.yaml\)"
    ):
        load_rubrics([tmp_path])


def test_unscoped_task_rubric_applies_nowhere(tmp_path):
    _write(tmp_path, "t.yaml", "rubrics:\n  - id: t.x\n    name: T\n    kind: task\n    description: d\n")
    rs = load_rubrics([tmp_path])
    assert rs.for_task("anything", "any") == []


def test_missing_path(tmp_path):
    with pytest.raises(RubricError, match="not found"):
        load_rubrics([tmp_path / "nope"])


def test_synth_task_rubrics_follow_the_schema(tmp_path):
    """Contract with `agentrl synth`: its rubric files load here and scope to its task ids."""
    import yaml

    tasks = pytest.importorskip("agentrl.synth.tasks")
    from environments.tool_world.domains import builtin_domains

    domain = builtin_domains()[0]
    rubrics = [tasks.rubric_for(domain, t) for t in domain.templates]
    (tmp_path / "tool_world.yaml").write_text(yaml.safe_dump({"rubrics": rubrics}, sort_keys=False))
    rs = load_rubrics([tmp_path])
    tpl = domain.templates[0]
    scoped = rs.for_task(f"train.000042.{domain.name}.{tpl.id}")
    assert [r.id for r in scoped] == [f"task.tool_world.{domain.name}.{tpl.id}"]
