"""`agentrl`: the CLI for every stage. Heavy imports are deferred so `agentrl --help` is instant.

Convention-based plug-ins keep this file small:
- `agentrl bench NAME` runs `agentrl.bench.NAME:run(quick: bool) -> dict`.
- `agentrl serve env NAME` serves `environments.NAME.server:create_app()`.
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated, Any

import typer

from agentrl.cli.output import emit_json
from agentrl.errors import AgentRLError

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="agentrl: agentic post-training by RL (K2 recipe)."
)
model_app = typer.Typer(no_args_is_help=True, help="Model presets, info and checkpoints.")
serve_app = typer.Typer(no_args_is_help=True, help="Serve environments, the rollout API or a policy.")
app.add_typer(model_app, name="model")
app.add_typer(serve_app, name="serve")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line.")]
ConfigOpt = Annotated[
    list[str] | None, typer.Option("--config", "-c", help="YAML config file(s), merged in order.")
]
OverrideArg = Annotated[list[str] | None, typer.Argument(help="Dotted overrides, e.g. rl.steps=10")]


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _run(fn, *args, **kwargs):
    """Call a command body and turn user errors into one clear line (exit 2)."""
    try:
        return fn(*args, **kwargs)
    except AgentRLError as exc:
        _fail(str(exc))


@model_app.command("info")
def model_info(
    preset: Annotated[str, typer.Option(help="Model preset: k2, k2-small or k2-tiny.")] = "k2-tiny",
    json_out: JsonOpt = False,
) -> None:
    """Count total and activated parameters of a preset on the meta device (nothing is materialised)."""
    from model.presets import count_params

    info = _run(count_params, preset)
    if json_out:
        emit_json(info)
    else:
        for k, v in info.items():
            typer.echo(f"{k}: {v:,}" if isinstance(v, int) else f"{k}: {v}")


@model_app.command("init")
def model_init(
    out: Annotated[str, typer.Option(help="Output checkpoint directory.")],
    preset: Annotated[str, typer.Option(help="Model preset.")] = "k2-tiny",
    seed: Annotated[int, typer.Option(help="Init seed.")] = 0,
) -> None:
    """Write a randomly initialised checkpoint (HF format, with the K2 tokenizer and chat template)."""
    from model.checkpoint import init_checkpoint

    path = _run(init_checkpoint, preset, out, seed=seed)
    typer.echo(f"wrote {path}")


@serve_app.command("env")
def serve_env(
    name: Annotated[str, typer.Argument(help="Environment name (a folder in environments/).")],
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8100,
) -> None:
    """Serve one environment locally, without docker."""
    import uvicorn

    try:
        module = importlib.import_module(f"environments.{name}.server")
    except ModuleNotFoundError:
        _fail(f"unknown environment {name!r}: no module environments.{name}.server")
    uvicorn.run(module.create_app(), host=host, port=port, log_level="warning")


@serve_app.command("rollout-api")
def serve_rollout_api(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8200,
    db: Annotated[
        str, typer.Option(help="Store URL: a SQLite path or a postgresql:// URL.")
    ] = "runs/rollout.db",
) -> None:
    """Serve the REST API that rollout workers lease jobs from and submit trajectories to."""
    import uvicorn

    try:
        from services.rollout_api.app import create_app
    except ModuleNotFoundError:
        _fail("the rollout API is not built yet (services/rollout_api)")
    uvicorn.run(create_app(db), host=host, port=port, log_level="warning")


@app.command("bench")
def bench(
    name: Annotated[
        str,
        typer.Argument(
            help="Benchmark: optim, qkclip, envs, rollout, rl, sync, synth, reliability, gpu (CUDA), all."
        ),
    ],
    quick: Annotated[bool, typer.Option(help="Smaller sizes, for smoke tests.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run a side-by-side benchmark and print its measurements."""
    try:
        module = importlib.import_module(f"agentrl.bench.{name.replace('-', '_')}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("agentrl.bench"):
            _fail(f"unknown benchmark {name!r}")
        raise
    result = _run(module.run, quick=quick)
    if json_out:
        emit_json(result)
    else:
        for k, v in result.items():
            typer.echo(f"{k}: {v}")


def _stage(config_cls_path: str, run_path: str, config, overrides, json_out: bool, **run_kwargs) -> None:
    """Load a stage config (YAML files + dotted overrides), write it next to the outputs, run, print."""
    from agentrl.config import load_config

    module, cls_name = config_cls_path.rsplit(":", 1)
    config_cls = getattr(importlib.import_module(module), cls_name)
    run_module, fn_name = run_path.rsplit(":", 1)
    run_fn = getattr(importlib.import_module(run_module), fn_name)
    cfg = _run(load_config, config_cls, config or [], overrides or [])
    result = _run(run_fn, cfg, **run_kwargs)
    if json_out:
        emit_json(result)
    else:
        print_result(result)


def print_result(result: dict[str, Any]) -> None:
    """A stage's result as text: one `key: value` line per scalar, and a block of rows for a table (a dict of
    dicts, e.g. eval's `by_template`); other nested values are left to `--json`."""
    for k, v in result.items():
        if isinstance(v, dict) and v and all(isinstance(row, dict) for row in v.values()):
            typer.echo(f"{k}:")
            for name, row in v.items():
                cells = " ".join(f"{c}={round(x, 2) if isinstance(x, float) else x}" for c, x in row.items())
                typer.echo(f"  {name}: {cells}")
        elif not isinstance(v, (dict, list)):
            typer.echo(f"{k}: {v}")


@app.command("synth")
def synth(config: ConfigOpt = None, overrides: OverrideArg = None, json_out: JsonOpt = False) -> None:
    """Generate synthetic tool-use data: tools -> agents and tasks -> trajectories -> judge filter.

    `agentrl synth rephrase [-c FILE] [key=value ...]` rephrases knowledge documents instead (docs/synth.md)."""
    if overrides and overrides[0] == "rephrase":  # an override always has '=', so no clash with a key
        _synth_rephrase(config, overrides[1:], json_out)
        return
    _stage(
        "agentrl.synth.config:SynthConfig", "agentrl.synth.pipeline:run_synth", config, overrides, json_out
    )


def _synth_rephrase(config, overrides, json_out: bool) -> None:
    """`agentrl synth rephrase`: like `_stage`, but the stage prints its own one-line report (or skip line)."""
    from agentrl.config import load_config
    from agentrl.synth.rephrase import run_rephrase
    from agentrl.synth.rephrase_config import RephraseConfig

    cfg = _run(load_config, RephraseConfig, config or [], overrides or [])
    result = _run(run_rephrase, cfg, echo=lambda line: typer.echo(line, err=json_out))
    if json_out:
        emit_json(result)


@app.command("sft")
def sft(config: ConfigOpt = None, overrides: OverrideArg = None, json_out: JsonOpt = False) -> None:
    """Supervised fine-tuning on synthetic trajectories (TRL SFTTrainer, K2 chat template, MuonClip)."""
    _stage("agentrl.train.sft:SFTStageConfig", "agentrl.train.sft:run_sft", config, overrides, json_out)


@app.command("rl")
def rl(config: ConfigOpt = None, overrides: OverrideArg = None, json_out: JsonOpt = False) -> None:
    """RL post-training with the K2 objective, budget control and temperature decay."""
    _stage(
        "agentrl.train.rl_stage:RLStageConfig",
        "agentrl.train.rl_stage:run_rl_stage",
        config,
        overrides,
        json_out,
    )


@app.command("eval")
def evaluate(config: ConfigOpt = None, overrides: OverrideArg = None, json_out: JsonOpt = False) -> None:
    """Evaluate a checkpoint on held-out tasks through the environment (success, tool-call validity, turns)."""
    _stage(
        "agentrl.eval.stage:EvalStageConfig", "agentrl.eval.stage:run_eval_stage", config, overrides, json_out
    )


@app.command("worker")
def worker(
    api: Annotated[str, typer.Option(help="Rollout API URL.")] = "http://127.0.0.1:8200",
    model: Annotated[str | None, typer.Option(help="Checkpoint for an in-process vLLM engine.")] = None,
    engine_url: Annotated[str | None, typer.Option(help="OpenAI-compatible vLLM server URL.")] = None,
    tokenizer: Annotated[str | None, typer.Option(help="Tokenizer dir (default: --model).")] = None,
    token: Annotated[str | None, typer.Option(envvar="AGENTRL_API_TOKEN", help="API bearer token.")] = None,
    env_token: Annotated[
        str | None, typer.Option(envvar="AGENTRL_ENV_TOKEN", help="Env bearer token.")
    ] = None,
    max_jobs: Annotated[int, typer.Option(help="Jobs leased and rolled out together.")] = 16,
    max_rounds: Annotated[int | None, typer.Option(help="Stop after this many lease rounds.")] = None,
    idle_exit: Annotated[
        float | None, typer.Option(help="Exit after the queue is empty this long (s).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """A standalone rollout worker that leases jobs from the rollout API."""
    from agentrl.rollout.worker_cli import run_worker_cli

    stats = _run(
        run_worker_cli,
        api,
        token=token,
        model=model,
        engine_url=engine_url,
        tokenizer_path=tokenizer,
        max_jobs=max_jobs,
        max_rounds=max_rounds,
        idle_exit_s=idle_exit,
        env_token=env_token,
    )
    if json_out:
        emit_json(stats)


@app.command("demo")
def demo(
    config: ConfigOpt = None,
    overrides: OverrideArg = None,
    quick: Annotated[bool, typer.Option(help="A few-minute smoke run of every stage.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """The main job: the whole K2 post-training pipeline on the embedded default."""
    from agentrl.demo import run_demo

    result = _run(run_demo, config or [], overrides or [], quick=quick)
    if json_out:
        emit_json(result)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
