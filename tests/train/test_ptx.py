"""PTX mixing: β = 0 is exactly the RL gradient; the gradient is linear in β; chat tokenization masks."""

import pytest
import torch

from agentrl.errors import ConfigError
from agentrl.train.interfaces import RolloutRequest
from agentrl.train.learner import PolicyLearner
from agentrl.train.ptx import PTXSampler, SFTExample, ptx_loss, tokenize_chat
from agentrl.train.rl_config import RLConfig
from agentrl.train.schedules import ConstantSchedule
from agentrl.train.sources import FixedPoolRollout
from tests.train.helpers import PAD, pool_tasks, tiny_model


class GradCapture(torch.optim.SGD):
    """SGD with lr 0 that records the gradient it is asked to apply."""

    def __init__(self, params):
        super().__init__(params, lr=0.0)
        self.grads: list[torch.Tensor] = []

    def step(self, closure=None):
        self.grads = [
            p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for g in self.param_groups
            for p in g["params"]
        ]
        return super().step(closure)


EXAMPLES = [
    SFTExample([1, 5, 6, 7, 8, 9], [0, 0, 0, 1, 1, 1]),
    SFTExample([1, 10, 11, 12], [0, 0, 1, 1]),
    SFTExample([1, 20, 21, 22, 23], [0, 0, 1, 1, 1]),
]


def _grads(beta, with_sampler=True):
    model = tiny_model()
    cfg = RLConfig(ptx={"beta": beta, "batch_size": 2}, optimizer={"grad_clip": None}, tasks_per_step=2)
    opt = GradCapture(model.parameters())
    ptx = PTXSampler(EXAMPLES, 2, PAD, seed=0) if with_sampler else None
    learner = PolicyLearner(model, opt, cfg.objective.build(), cfg, PAD, ConstantSchedule(1.0), ptx)
    torch.manual_seed(0)
    tasks = pool_tasks(2)
    trajs = FixedPoolRollout()(RolloutRequest(0, 0, tasks, 4, 1.0, 0))
    metrics = learner.update(trajs, [t.reward for t in trajs], step=0, temperature=1.0)
    return opt.grads, metrics, model


def test_beta_zero_equals_pure_rl_and_gradient_is_linear_in_beta():
    g_rl, m_rl, _ = _grads(0.0, with_sampler=False)
    g0, m0, _ = _grads(0.0)
    assert all(torch.equal(a, b) for a, b in zip(g_rl, g0, strict=True))
    assert m0["loss/total"] == m_rl["loss/total"]
    g_half, m_half, _ = _grads(0.5)
    g_one, m_one, model = _grads(1.0)
    # ∇(L_RL + β L_PTX) = ∇L_RL + β ∇L_PTX; check against an independent ∇L_PTX on the same SFT batch.
    ids, attn, mask = PTXSampler(EXAMPLES, 2, PAD, seed=0).next_batch()
    fresh = tiny_model()
    ptx_loss(fresh, ids, attn, mask).backward()
    g_ptx = [p.grad if p.grad is not None else torch.zeros_like(p) for p in fresh.parameters()]
    for a, b, c, p in zip(g_rl, g_half, g_one, g_ptx, strict=True):
        assert torch.allclose(b, a + 0.5 * p, atol=1e-6, rtol=1e-4)
        assert torch.allclose(c, a + p, atol=1e-6, rtol=1e-4)
    assert any(p.abs().sum() > 0 for p in g_ptx)
    assert m_one["loss/total"] == pytest.approx(m_one["loss/rl"] + m_one["loss/ptx"])


def test_ptx_loss_only_counts_masked_tokens():
    model = tiny_model()
    ids = torch.tensor([[1, 5, 6, 7]])
    attn = torch.ones_like(ids)
    full = ptx_loss(model, ids, attn, torch.tensor([[0.0, 1, 1, 1]]))
    last = ptx_loss(model, ids, attn, torch.tensor([[0.0, 0, 0, 1]]))
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    assert last.item() == pytest.approx(-logp[2, 7].item(), rel=1e-5)
    assert full.item() == pytest.approx(-(logp[0, 5] + logp[1, 6] + logp[2, 7]).item() / 3, rel=1e-5)


def test_sampler_is_deterministic_and_resumable():
    a = PTXSampler(EXAMPLES, 2, PAD, seed=3)
    first = [a.next_batch()[0] for _ in range(2)]
    state = a.state_dict()
    nxt = a.next_batch()[0]
    b = PTXSampler(EXAMPLES, 2, PAD, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(first, [b.next_batch()[0] for _ in range(2)], strict=True))
    c = PTXSampler(EXAMPLES, 2, PAD, seed=3)
    c.load_state_dict(state)
    assert torch.equal(c.next_batch()[0], nxt)
    with pytest.raises(ConfigError, match="empty"):
        PTXSampler([], 2, PAD)


def test_tokenize_chat_trains_on_assistant_bodies_only():
    from model.tokenizer import default_corpus, train_tokenizer

    tok = train_tokenizer(default_corpus(), vocab_size=512)
    msgs = [
        {"role": "user", "content": "add 2 and 3"},
        {"role": "assistant", "content": "5"},
    ]
    ex = tokenize_chat(msgs, tok)
    from model.chat_format import render_messages

    assert ex.token_ids == tok.encode(render_messages(msgs), add_special_tokens=False)
    trained = tok.decode([t for t, m in zip(ex.token_ids, ex.loss_mask, strict=True) if m])
    assert trained == "5<|im_end|>"
    with pytest.raises(ConfigError, match="no assistant"):
        tokenize_chat([{"role": "user", "content": "hi"}], tok)
    # Same tokens and masks as the SFT stage's chat-template path, tool calls included.
    call = {"id": "functions.add:0", "type": "function", "function": {"name": "add", "arguments": '{"a": 2}'}}
    tool_msgs = msgs[:1] + [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "functions.add:0", "content": "5"},
        {"role": "assistant", "content": "5"},
    ]
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    from agentrl.train.ptx import ptx_examples_from_records

    for m, t in ((msgs, None), (tool_msgs, tools)):
        (sft,) = ptx_examples_from_records([{"messages": m, "tools": t}], tok, max_length=4096)
        assert sft == tokenize_chat(m, tok, tools=t)
