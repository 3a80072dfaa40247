"""The multi-turn agent loop, token-in/token-out, over many episodes at once.

Continuous batching across turns: the loop drives the engine one scheduler step at a time (`StepEngine`). An
episode whose environment call returns is submitted at once and joins the running batch at the next step; an
episode whose turn ends leaves it and goes to its environment on a thread pool. No turn waits for the other
episodes' turns, so the engine keeps generating while environments answer: concurrency hides environment latency
and the batch stays full (`VLLMEngine` steps its scheduler; `OpenAIServerEngine` sends each request as its own
HTTP call). Engines with only a whole-batch `generate` run through `BatchStepper`: one call per round of ready
episodes. Environment calls (reset, tool steps, final
answers) run on the pool. K2's tool-call format is parsed from the generated text (`parse_assistant_output`); the
calls go to the environment as an `Action` (over HTTP with `EnvClient`, or in process with `LocalEnv`).

Failure semantics (no silent hangs, peers.md §3):
- malformed tool calls -> a tool-error observation the policy sees next turn (counted in
  `num_invalid_tool_calls`), never a crash;
- an environment call that raises or times out -> that trajectory is `failed` with the reason; the others go on;
- the engine raising -> `EngineError` propagates: the run fails fast with a message that says so.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from agentrl.engine.base import EngineError, Generation, InferenceEngine, StepEngine
from agentrl.engine.stepper import as_step_engine
from agentrl.rollout.episode import Episode, EpisodeSpec
from agentrl.schemas.trajectory import Trajectory, TrajectoryStatus
from environments.protocol import Action, StepResult
from model.chat_format import parse_assistant_output, render_messages
from model.special_tokens import EOS, IM_END

MALFORMED_CALL_ID = "functions.invalid:0"


@dataclass
class LoopConfig:
    max_turns: int = 16  # assistant turns per episode
    max_turn_tokens: int = 512  # one assistant turn longer than this is cut and the episode truncated
    max_context_tokens: int = 1024  # the engine's max_model_len
    env_threads: int = 32
    env_timeout_s: float = 120.0  # backstop over EnvClient's own per-request timeouts
    batch_wait_s: float = 0.02  # how long to wait for more env results before generating for a smaller batch


class AgentLoop:
    def __init__(self, engine: InferenceEngine, tokenizer: Any, config: LoopConfig | None = None) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.config = config or LoopConfig()
        self.stop_ids = tuple(tokenizer.convert_tokens_to_ids(t) for t in (IM_END, EOS))

    # ---- public -------------------------------------------------------------------------------------------

    def run(self, specs: list[EpisodeSpec]) -> list[Trajectory]:
        """Run every episode to an end (ok, truncated, failed) or to its partial-rollout budget (partial)."""
        episodes = [self._new_episode(s) for s in specs]
        engine = as_step_engine(self.engine)
        pool = ThreadPoolExecutor(max_workers=max(1, min(self.config.env_threads, len(specs))))
        pending: dict[Future, tuple[Episode, str]] = {}  # env calls in flight
        running: dict[str, Episode] = {}  # engine request id -> episode
        ready: list[Episode] = []  # episodes whose next move is an engine request
        closing: list[Future] = []
        try:
            for ep in episodes:
                if ep.spec.resume_from is not None:
                    ready.append(ep)
                else:
                    pending[pool.submit(self._timed, ep, self._reset, ep)] = (ep, "reset")
            while ready or pending or running:
                if pending:
                    self._collect(pending, ready, closing, pool, block=not (ready or running))
                for ep in ready:
                    self._submit(engine, ep, running)
                    if ep.done:
                        closing += self._close(pool, ep)
                ready.clear()
                if not running:
                    continue
                for request_id, gen in self._engine_step(engine, len(running)):
                    ep = running.pop(request_id)
                    act = self._after_generation(ep, gen)
                    if act is not None:
                        pending[pool.submit(self._timed, ep, self._step, ep, act)] = (ep, "step")
                    elif ep.done:
                        closing += self._close(pool, ep)
                    else:
                        ready.append(ep)
            wait(closing, timeout=5.0)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return [ep.to_trajectory() for ep in episodes]

    # ---- engine side --------------------------------------------------------------------------------------

    def _submit(self, engine: StepEngine, ep: Episode, running: dict[str, Episode]) -> None:
        """Queue the episode's next engine request, or stop it when no budget is left."""
        spec, stop = ep.next_sampling(self.config.max_turn_tokens, self.config.max_context_tokens)
        if stop is not None:
            ep.status = TrajectoryStatus(stop)
            return
        if not spec.stop_token_ids:
            spec = replace(spec, stop_token_ids=self.stop_ids)
        request_id = f"{ep.id}:{ep.calls}"
        running[request_id] = ep
        # The prompt is the episode's exact token sequence so far: nothing is re-rendered.
        self._engine_call(lambda: engine.submit(request_id, list(ep.token_ids), spec), "submit")

    def _engine_step(self, engine: StepEngine, expected: int) -> list[tuple[str, Generation]]:
        finished = self._engine_call(engine.step, "generate")
        if not finished and engine.num_unfinished() == 0:
            raise EngineError(f"engine dropped {expected} requests: nothing finished and nothing is running")
        return finished

    def _engine_call(self, fn: Any, what: str) -> Any:
        try:
            return fn()
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(f"inference engine failed during {what}: {type(exc).__name__}: {exc}") from exc

    def _after_generation(self, ep: Episode, gen: Any) -> Action | None:
        if ep.turn_start < 0:
            ep.turn_start = len(ep.token_ids)
        ep.append_generated(list(gen.token_ids), list(gen.logprobs), ep.spec.policy_version)
        ep.calls += 1
        if not gen.token_ids or gen.token_ids[-1] not in self.stop_ids:
            _, stop = ep.next_sampling(self.config.max_turn_tokens, self.config.max_context_tokens)
            if stop is None:
                ep.status = TrajectoryStatus.truncated
                ep.failure_reason = f"assistant turn exceeded max_turn_tokens={self.config.max_turn_tokens}"
            else:
                ep.status = TrajectoryStatus(stop)
            return None
        turn = ep.token_ids[ep.turn_start :]
        ep.turn_start = -1
        ep.num_turns += 1
        parsed = parse_assistant_output(self.tokenizer.decode(turn, skip_special_tokens=False))
        message: dict[str, Any] = {"role": "assistant", "content": parsed.content}
        errors = list(parsed.errors)
        action = None
        if parsed.tool_calls:
            message["tool_calls"] = parsed.tool_calls
            try:
                action = Action(tool_calls=parsed.tool_calls, content=parsed.content or None)
            except ValidationError as exc:
                errors.append(f"invalid tool calls: {exc.errors()[0]['msg']}")
        elif not errors:
            action = Action(final_answer=parsed.content)
        ep.messages.append(message)
        ep.num_tool_calls += len(parsed.tool_calls)
        if errors:
            ep.num_invalid_tool_calls += max(1, len(errors))
            ep.env_info.setdefault("format_errors", []).extend(errors)
        if action is None:  # nothing valid to execute: the policy sees the error and tries again
            self._observe(ep, [self._error_message(errors)])
            return None
        ep.pending_errors = errors
        return action

    def _error_message(self, errors: list[str]) -> dict[str, Any]:
        return {
            "role": "tool",
            "tool_call_id": MALFORMED_CALL_ID,
            "name": "error",
            "content": "error: malformed tool call (" + "; ".join(errors) + "). Format: "
            "<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:IDX<|tool_call_argument_begin|>"
            "{json arguments}<|tool_call_end|><|tool_calls_section_end|>",
        }

    def _observe(self, ep: Episode, messages: list[dict[str, Any]]) -> None:
        ep.append_messages(self.tokenizer, messages, generation_prompt=True)
        if ep.num_turns >= self.config.max_turns:
            ep.status = TrajectoryStatus.truncated
            ep.failure_reason = f"reached max_turns={self.config.max_turns}"

    # ---- environment side (runs in the pool) ---------------------------------------------------------------

    def _timed(self, ep: Episode, fn: Any, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            ep.env_s += time.perf_counter() - start

    def _reset(self, ep: Episode) -> Any:
        return ep.spec.env.reset(ep.spec.task, seed=ep.spec.env_seed)

    def _step(self, ep: Episode, action: Action) -> StepResult:
        return ep.spec.env.step(ep.session_id, action)

    def _close(self, pool: ThreadPoolExecutor, ep: Episode) -> list[Future]:
        if not ep.session_id or ep.status == TrajectoryStatus.partial:
            return []  # a partial episode keeps its session for the next iteration

        def close() -> None:
            # Best effort: the server also expires idle sessions.
            with contextlib.suppress(Exception):
                ep.spec.env.close_session(ep.session_id)

        return [pool.submit(close)]

    def _collect(
        self,
        pending: dict[Future, tuple[Episode, str]],
        ready: list[Episode],
        closing: list[Future],
        pool: ThreadPoolExecutor,
        block: bool,
    ) -> None:
        """Take finished env calls. `block`: the engine has nothing to do, so wait for at least one (up to the
        env timeout) and then a moment for the rest, so the next engine step starts with a fuller batch;
        otherwise only poll, and the engine keeps generating for the others."""
        if block:
            done, _ = wait(pending, timeout=self.config.env_timeout_s, return_when=FIRST_COMPLETED)
            if not done:
                for fut, (ep, kind) in list(pending.items()):
                    ep.status = TrajectoryStatus.failed
                    ep.failure_reason = f"environment {kind} timed out after {self.config.env_timeout_s:.0f}s"
                    del pending[fut]
                return
            wait(pending, timeout=self.config.batch_wait_s, return_when=ALL_COMPLETED)
        for fut in [f for f in pending if f.done()]:
            ep, kind = pending.pop(fut)
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 - any env failure fails this trajectory only
                ep.status = TrajectoryStatus.failed
                ep.failure_reason = (
                    f"environment {ep.spec.env_name or 'env'} failed during {kind} "
                    f"(turn {ep.num_turns}): {type(exc).__name__}: {exc}"
                )
                closing += self._close(pool, ep)
                continue
            if kind == "reset":
                self._start(ep, result)
            else:
                self._apply_step(ep, result)
            if ep.done:
                closing += self._close(pool, ep)
            else:
                ready.append(ep)

    def _start(self, ep: Episode, obs: Any) -> None:
        ep.session_id = obs.session_id
        if not ep.spec.task_id and obs.task_id:
            ep.spec.task_id = obs.task_id
        messages = [m.openai() for m in obs.messages]
        # The only full render: the episode's initial prompt. Later turns append suffixes only.
        text = render_messages(messages, tools=obs.tools or None, add_generation_prompt=True)
        ep.messages = messages
        ep.append_prompt(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        ep.prompt_len = len(ep.token_ids)
        ep.env_info.update({"reset": obs.info} if obs.info else {})

    def _apply_step(self, ep: Episode, result: StepResult) -> None:
        errors, ep.pending_errors = ep.pending_errors, []
        tool_errors = result.info.get("tool_errors") or []
        ep.num_invalid_tool_calls += len(tool_errors)
        ep.env_reward = (ep.env_reward or 0.0) + result.reward
        messages = [m.openai() for m in result.messages]
        if errors:
            messages.append(self._error_message(errors))
        if result.done:
            ep.messages += messages  # shown, not tokenized: nothing is generated after the end
            ep.env_info["final"] = result.info
            ep.status = TrajectoryStatus.truncated if result.info.get("truncated") else TrajectoryStatus.ok
            return
        self._observe(ep, messages)

    def _new_episode(self, spec: EpisodeSpec) -> Episode:
        if spec.resume_from is not None:
            ep = Episode.resume(spec)
            ep.segment_generated = 0
            return ep
        return Episode(spec=spec, id=spec.trajectory_id or uuid.uuid4().hex)
