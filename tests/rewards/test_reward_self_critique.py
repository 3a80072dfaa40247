import re

import pytest

from agentrl.rewards.openai_client import ChatClient, ChatClientConfig
from agentrl.rewards.pairwise import PairwiseConfig
from agentrl.rewards.self_critique import SelfCritiqueConfig, SelfCritiqueReward, chat_client_critic


def _responses(messages):
    user = messages[1]["content"]
    a = re.search(r"# Response A\n(.*?)\n\n# Response B", user, re.DOTALL).group(1)
    b = re.search(r"# Response B\n(.*?)\n\nWhich response", user, re.DOTALL).group(1)
    return a, b


def rule_critic(batch):
    """A deterministic stand-in for the policy-as-critic: prefers the response that says Paris, else
    the one without praise; otherwise leans to position A (a position bias); says junk for 'junk'."""
    out = []
    for messages in batch:
        a, b = _responses(messages)
        if "junk" in a or "junk" in b:
            out.append("I cannot decide.")
            continue
        sa, sb = ("Paris" in a) * 2 - ("Great question" in a), ("Paris" in b) * 2 - ("Great question" in b)
        out.append("[[A]]" if sa > sb else "[[B]]" if sb > sa else "Both similar. [[A]]")
    return out


SAMPLES = ["Paris.", "Great question! Paris.", "Lyon.", "Great question! Lyon."]


@pytest.mark.parametrize("method", ["win_rate", "bradley_terry"])
def test_group_rewards_follow_the_critic(repo_rubrics, method):
    sc = SelfCritiqueReward(
        rule_critic, repo_rubrics, SelfCritiqueConfig(pairwise=PairwiseConfig(method=method))
    )
    results = sc.score_group(SAMPLES, {"prompt": "What is the capital of France?"})
    values = [r.value for r in results]
    assert values[0] > values[1] > values[2] > values[3]
    d = results[0].details
    assert d["comparisons"] == 12 and d["abstained_comparisons"] == 0 and d["wins"] == 6 and d["games"] == 6
    assert "core.clarity_relevance" in d["rubric_ids"]


def test_identical_samples_tie_despite_position_bias(repo_rubrics):
    results = SelfCritiqueReward(rule_critic, repo_rubrics).score_group(
        ["Paris."] * 3, {"prompt": "Capital?"}
    )
    assert [r.value for r in results] == pytest.approx([0.5] * 3)
    assert results[0].details["position_a_rate"] == 1.0


def test_unparseable_verdicts_are_dropped_or_abstain(repo_rubrics):
    sc = SelfCritiqueReward(rule_critic, repo_rubrics)
    results = sc.score_group(["Paris.", "Lyon.", "junk"], {"prompt": "Capital?"})
    assert results[0].details["abstained_comparisons"] == 4  # the 4 ordered pairs involving "junk"
    assert results[0].value > results[1].value
    assert results[2].abstained and not results[0].abstained
    all_junk = sc.score_group(["junk 1", "junk 2"], {"prompt": "Capital?"})
    assert all(r.abstained for r in all_junk)
    assert sc.score_group(["only one"])[0].abstained


def test_critic_must_answer_every_prompt(repo_rubrics):
    sc = SelfCritiqueReward(lambda batch: ["[[A]]"], repo_rubrics)
    with pytest.raises(RuntimeError, match="1 completions for 2 prompts"):
        sc.score_group(["a", "b"])


def test_critic_over_openai_server(fake_openai_server, repo_rubrics, request):
    """The same reward with the critic behind an OpenAI-compatible server (vLLM's API shape)."""
    url, app = fake_openai_server
    model = f"critic_always_a:{request.node.name}"
    client = ChatClient(ChatClientConfig(base_url=url, model=model, max_retries=0))
    sc = SelfCritiqueReward(chat_client_critic(client, max_concurrency=3), repo_rubrics)
    results = sc.score_group(["x", "y", "z"], {"prompt": "p"})
    assert app.state.calls[model] == 6
    assert [r.value for r in results] == pytest.approx([0.5] * 3)  # pure position bias cancels
    assert "response_format" not in app.state.bodies[-1]  # free text: the verdict token is parsed
    # An unreachable critic abstains instead of crashing the RL step.
    dead = ChatClient(ChatClientConfig(base_url="http://127.0.0.1:9/v1", max_retries=0))
    assert all(
        r.abstained
        for r in SelfCritiqueReward(chat_client_critic(dead), repo_rubrics).score_group(["a", "b"])
    )


@pytest.mark.slow
def test_guided_critic_over_real_vllm(vllm_server_url, small_rubrics):
    """The policy checkpoint as critic behind vLLM: guided verdicts always parse, and the maths holds."""
    import httpx

    from agentrl.rewards.rubrics import RubricSet

    model = httpx.get(f"{vllm_server_url}/models", timeout=10).json()["data"][0]["id"]
    client = ChatClient(ChatClientConfig(base_url=vllm_server_url, model=model, max_tokens=16, timeout_s=300))
    sc = SelfCritiqueReward(
        chat_client_critic(client, max_concurrency=2, guided=True), RubricSet(rubrics=small_rubrics)
    )
    results = sc.score_group(["Paris.", "Lyon.", "Great question! Paris."], {"prompt": "Capital of France?"})
    assert not any(r.abstained for r in results)
    assert results[0].details["abstained_comparisons"] == 0 and results[0].details["comparisons"] == 6
    # Bradley-Terry expected win rates of K samples sum to K/2 whatever the critic said.
    assert sum(r.value for r in results) == pytest.approx(1.5, abs=1e-6)
    assert client.stats.as_dict()["completion_tokens"] > 0
