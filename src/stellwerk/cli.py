"""The command line: the one synchronous edge of Stellwerk.

Every command takes `--config FILE`, before or after its name (`stellwerk --config x.yaml status`
or `stellwerk status --config x.yaml`); without it the config is the first of
`$STELLWERK_CONFIG`, `./stellwerk.yaml`, `$XDG_CONFIG_HOME/stellwerk/stellwerk.yaml`, else the
built-in defaults (`config.find_config`). A bad config ends with the key path of the problem and
exit status 2, never a traceback. Heavy modules are imported inside the commands, so
`stellwerk route` starts fast. Colour only on a terminal, and never with `$NO_COLOR` set.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from .errors import ConfigError, StellwerkError

F = TypeVar("F", bound=Callable[..., Any])

CONFIG_HELP = (
    "Config file (default: $STELLWERK_CONFIG, ./stellwerk.yaml,"
    " ~/.config/stellwerk/stellwerk.yaml, else the built-in defaults)."
)


def _config_from_group(ctx: click.Context, param: click.Parameter, value: Path | None) -> Any:
    """A subcommand's `--config`, else the one given before the subcommand (`find_config`
    reads `$STELLWERK_CONFIG` and the default places: no `envvar` here, so the variable never
    overrides a `--config` written before the subcommand)."""
    if value is not None:
        return value
    return ctx.find_root().params.get("config_path")


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_config_from_group,
    help=CONFIG_HELP,
)


def no_color(env: dict[str, str] | os._Environ[str] | None = None) -> bool:
    """`$NO_COLOR` set to anything but the empty string switches colour off (no-color.org)."""
    return bool((os.environ if env is None else env).get("NO_COLOR"))


def _error(text: str) -> None:
    click.echo(click.style(text, fg="red"), err=True)


class _Group(click.Group):
    """Turns Stellwerk's own errors into one clear line and an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        if no_color():
            ctx.color = False  # the subcommands' contexts inherit it; click.echo strips styles
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            _error(f"stellwerk: config error: {exc}")
            sys.exit(2)
        except StellwerkError as exc:
            _error(f"stellwerk: {exc}")
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    None, "-V", "--version", package_name="stellwerk", message="stellwerk %(version)s"
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help=CONFIG_HELP,
)
def main(config_path: Path | None) -> None:
    """Stellwerk: route every LLM request to the right model, and survive its failures.

    \b
    Shell completion, in ~/.bashrc (zsh: zsh_source; fish: fish_source, see docs/install.md):
      eval "$(_STELLWERK_COMPLETE=bash_source stellwerk)"
    """


# -- route -----------------------------------------------------------------------------------


@main.command()
@click.argument("prompt", required=False)
@click.option("--system", help="A system prompt to classify with the prompt.")
@click.option("--model", default="auto", show_default=True, help="auto, auto:CLASS, alias or id.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--jsonl", is_flag=True, help="Read JSON lines (prompt or messages) from stdin.")
@config_option
def route(
    prompt: str | None,
    system: str | None,
    model: str,
    as_json: bool,
    jsonl: bool,
    config_path: Path | None,
) -> None:
    """Explain how PROMPT would be routed, without calling any model."""
    from .explain import Explainer

    explainer = Explainer.open(config_path)
    if jsonl:
        for line in _stdin_lines():
            click.echo(json.dumps(explainer.explain_line(line), ensure_ascii=False))
        return
    if prompt is None:
        raise click.UsageError("give a PROMPT, or --jsonl to read prompts from stdin")
    result = explainer.explain_prompt(prompt, system=system, model=model)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        click.echo(explainer.render(result))


def _stdin_lines() -> Iterator[str]:
    for line in sys.stdin:
        if line.strip():
            yield line


# -- eval-classifier -------------------------------------------------------------------------


@main.command("eval-classifier")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@config_option
def eval_classifier(file: Path, as_json: bool, config_path: Path | None) -> None:
    """Measure the task classifier on FILE.jsonl (lines with `prompt` and `label`)."""
    from .config import load_policy
    from .evaluate import evaluate, load_jsonl

    policy = load_policy(config_path)
    try:
        items = load_jsonl(file)
    except ValueError as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    report = evaluate(items, policy)
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else report.render())


# -- config ----------------------------------------------------------------------------------


@main.group()
def config() -> None:
    """Write, check and show the configuration."""


@config.command("init")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--full", is_flag=True, help="Write every default, each explained.")
@click.option("--user", "for_user", is_flag=True, help="Write ~/.config/stellwerk/stellwerk.yaml.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def config_init(file: Path | None, full: bool, for_user: bool, force: bool) -> None:
    """Write a short commented config of what users change to FILE (default: ./stellwerk.yaml).

    --full writes the whole built-in default instead; --user writes to the user config
    directory ($XDG_CONFIG_HOME/stellwerk/stellwerk.yaml), which Stellwerk finds from anywhere.
    """
    from .config import CONFIG_NAME, default_config_text, user_config_path

    if file is not None and for_user:
        raise click.UsageError("give a FILE or --user, not both")
    target = user_config_path() if for_user else (file or Path(CONFIG_NAME))
    if target.exists() and not force:
        raise click.ClickException(f"{target} exists (use --force to overwrite)")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(default_config_text(full=full), "utf-8")
    click.echo(f"wrote {target}")


@config.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@config_option
def config_validate(file: Path | None, config_path: Path | None) -> None:
    """Check FILE (default: the config in force); exit 2 with the key path if it is invalid."""
    from .config import load_policy

    policy = load_policy(file or config_path)
    unavailable = [p.name for p in policy.providers.values() if not p.available]
    click.echo(f"{policy.source}: ok ({len(policy.models)} models, {len(policy.stack)} in stack)")
    if unavailable:
        click.echo(f"configured without a key (unavailable): {', '.join(unavailable)}")


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
@config_option
def config_show(as_json: bool, config_path: Path | None) -> None:
    """Print the effective configuration, secrets masked."""
    import yaml

    from .config import BUILT_IN, find_config, raw_config

    data = raw_config(config_path)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    found = find_config(config_path)
    click.echo(f"# config in force: {found if found is not None else BUILT_IN}")
    click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)


# -- demo ------------------------------------------------------------------------------------


@main.command()
@config_option
def demo(config_path: Path | None) -> None:
    """Route a day of typical agent requests on the embedded defaults (no keys, no network)."""
    from .demo import run_demo

    run_demo(config_path, echo=click.echo)


# -- chat, status, reset ---------------------------------------------------------------------


@main.command()
@click.argument("prompt", required=False)
@click.option("--model", default="auto", show_default=True, help="auto, auto:CLASS, alias or id.")
@click.option("--system", help="A system prompt.")
@click.option(
    "--stream/--no-stream",
    default=None,
    help="Print the answer as it arrives (default: on a terminal, not when piped).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: answer and decision.")
@click.option("--max-tokens", type=int, help="Upper bound on the answer's tokens.")
@config_option
def chat(
    prompt: str | None,
    model: str,
    system: str | None,
    stream: bool | None,
    as_json: bool,
    max_tokens: int | None,
    config_path: Path | None,
) -> None:
    """Send PROMPT (or stdin) through the router; print the answer, which model answered, and why.

    Without PROMPT the prompt is read from stdin: `git diff | stellwerk chat --system "Review"`.
    """
    import asyncio

    from .chat import run_chat

    if as_json and stream:
        raise click.UsageError("--json prints the whole answer at once: not with --stream")
    if prompt is None:
        if sys.stdin.isatty():
            raise click.UsageError("give a PROMPT, or pipe one on stdin")
        prompt = sys.stdin.read()
    if not prompt.strip():
        raise click.UsageError("the prompt is empty")
    if stream is None:
        stream = not as_json and sys.stdout.isatty()
    code = asyncio.run(
        run_chat(
            config_path,
            prompt,
            model=model,
            system=system,
            stream=stream,
            max_tokens=max_tokens,
            as_json=as_json,
            echo=click.echo,
        )
    )
    sys.exit(code)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@config_option
def status(as_json: bool, config_path: Path | None) -> None:
    """Show providers (keys masked), cooldowns with reason and expiry, and the routing mode."""
    import asyncio

    from .chat import read_status
    from .status import render_status

    data = asyncio.run(read_status(config_path))
    click.echo(json.dumps(data, indent=2) if as_json else render_status(data, style=click.style))


@main.command()
@click.argument("target", required=False, default="")
@config_option
def reset(target: str, config_path: Path | None) -> None:
    """Clear cooldowns: all, or those of TARGET (a provider, credential id, model or alias).

    After topping up a provider's credit, `stellwerk reset PROVIDER` makes it usable at once.
    """
    import asyncio

    from .chat import reset_cooldowns, reset_target_error
    from .config import load_policy

    if problem := reset_target_error(load_policy(config_path), target):
        raise click.BadParameter(problem, param_hint="TARGET")
    count = asyncio.run(reset_cooldowns(config_path, target))
    click.echo(
        f"cleared {count} cooldown{'s' if count != 1 else ''}"
        + (f" for {target}" if target else "")
    )


@main.command()
@config_option
def probe(config_path: Path | None) -> None:
    """Try every cooled key whose probe is due with a one-token request; end cooldowns that pass.

    Billing cooldowns are not probed unless cooldowns.probe.billing is true: after topping up,
    `stellwerk reset PROVIDER` is the way.
    """
    import asyncio

    from .chat import run_probes_explained

    results, reasons = asyncio.run(run_probes_explained(config_path))
    for key, outcome in results:
        state = (
            click.style("usable again", fg="green")
            if outcome == "ok"
            else click.style("still failing: " + outcome, fg="yellow")
        )
        click.echo(f"{key:<56} {state}")
    for line in reasons:
        click.echo(line)


# -- serve -----------------------------------------------------------------------------------


@main.command()
@click.option("--host", help="Address to bind (default: gateway.host, 127.0.0.1).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="Port (default: gateway.port, 4711; 0: any free one).",
)
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the gateway's URL to this file once it listens.",
)
@click.option(
    "--pid-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the pid for `config reload` (default: next to the state database).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Gateway processes sharing the port (SO_REUSEPORT); about one per core.",
)
@click.option("--reuse-port", is_flag=True, hidden=True)  # set on each of `--workers N`
@config_option
def serve(
    host: str | None,
    port: int | None,
    ready_file: Path | None,
    pid_file: Path | None,
    workers: int,
    reuse_port: bool,
    config_path: Path | None,
) -> None:
    """Run the HTTP gateway: OpenAI- and Anthropic-compatible endpoints on one port."""
    from .server.run import run_loop
    from .server.run import serve as run_gateway

    options: dict[str, Any] = dict(host=host, port=port, ready_file=ready_file, pid_file=pid_file)
    echo = lambda line: click.echo(line)  # noqa: E731
    if workers > 1:
        from .server.workers import serve_workers

        serve_workers(workers, config_path, echo=echo, **options)
        return
    run_loop(run_gateway(config_path, echo=echo, reuse_port=reuse_port, **options))


@config.command("reload")
@click.option(
    "--pid-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The running gateway's pid file (default: next to the state database).",
)
@config_option
def config_reload(pid_file: Path | None, config_path: Path | None) -> None:
    """Validate the config, then tell the running gateway to reload it (SIGHUP)."""
    from .config import load_policy
    from .server.run import default_pid_file, signal_reload

    policy = load_policy(config_path)
    pid = signal_reload(pid_file or default_pid_file())
    click.echo(f"{policy.source}: ok; asked the gateway (pid {pid}) to reload it")


# -- budget ----------------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@config_option
def budget(as_json: bool, config_path: Path | None) -> None:
    """Show every budget with its use, limit, percentage and when its window resets."""
    import asyncio

    from .budget import render_budgets
    from .spend import read_budgets

    rows = asyncio.run(read_budgets(config_path))
    click.echo(json.dumps(rows, indent=2) if as_json else render_budgets(rows))


# -- stats, log (the ledger) -----------------------------------------------------------------


@main.command()
@click.option(
    "--since", default="24h", show_default=True, help="24h, 7d, 90m, or a date (2026-11-01)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (money in micro-dollars).")
@config_option
def stats(since: str, as_json: bool, config_path: Path | None) -> None:
    """Requests, tokens and cost per class, model and provider; fallbacks; savings."""
    import asyncio

    from .stats import read_stats, render_stats, stats_json

    try:
        report, tz = asyncio.run(read_stats(config_path, since))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    click.echo(json.dumps(stats_json(report), indent=2) if as_json else render_stats(report, tz))


@main.command()
@click.option("--tail", "count", default=20, show_default=True, type=click.IntRange(0))
@click.option("--follow", "-f", is_flag=True, help="Keep printing new decisions as they come.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (JSON lines).")
@config_option
def log(count: int, follow: bool, as_json: bool, config_path: Path | None) -> None:
    """Recent decisions from the ledger, one line each (times in the local time zone)."""
    import asyncio

    from .tail import show_log

    try:
        asyncio.run(show_log(config_path, count, forever=follow, as_json=as_json, echo=click.echo))
    except KeyboardInterrupt:
        pass


# -- check, emergency ------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@config_option
def check(as_json: bool, config_path: Path | None) -> None:
    """Check keys (masked), that every provider answers, and Ollama's models; exit 1 if not."""
    import asyncio

    from .check import check_config, render, to_json_text

    report = asyncio.run(check_config(config_path))
    click.echo(to_json_text(report) if as_json else render(report))
    sys.exit(0 if report.healthy else 1)


@main.command()
@click.argument("state", type=click.Choice(["on", "off"]))
@config_option
def emergency(state: str, config_path: Path | None) -> None:
    """Switch local-only emergency mode on or off by hand (on by hand: off only by hand)."""
    import asyncio

    from .emergency import switch_by_hand

    changed = asyncio.run(switch_by_hand(config_path, state == "on"))
    what = "on: local models only" if state == "on" else "off: normal routing"
    click.echo(f"emergency mode {what}" + ("" if changed else " (it already was)"))


# -- openclaw --------------------------------------------------------------------------------


@main.command()
@click.option("--apply", "do_apply", is_flag=True, help="Merge the block into openclaw.json.")
@click.option(
    "--file",
    "file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="openclaw.json to merge into (default: $OPENCLAW_CONFIG_PATH, else "
    "~/.openclaw/openclaw.json).",
)
@click.option("--dry-run", is_flag=True, help="Show what --apply would change; write nothing.")
@config_option
def openclaw(do_apply: bool, file: Path | None, dry_run: bool, config_path: Path | None) -> None:
    """Print the OpenClaw config block for this gateway, or merge it into openclaw.json.

    --apply sets only Stellwerk's two providers, agents.defaults.model.primary, .fallbacks (only
    when absent or already Stellwerk's) and agents.defaults.heartbeat.model; it keeps comments
    and everything else, writes a backup beside the file first and prints the diff.
    """
    from .openclaw import block_for, default_config_file, plan_merge, write_merge

    block = block_for(config_path)
    if not (do_apply or dry_run):
        if file is not None:
            raise click.UsageError("--file goes with --apply or --dry-run")
        click.echo(block.text(), nl=False)
        return
    merge = plan_merge(file or default_config_file(), block)
    if merge.changed:
        click.echo(merge.diff(), nl=False)
    for note in merge.notes:
        click.echo(f"note: {note}")
    if not merge.changed:
        return
    if dry_run:
        click.echo(f"dry run: {merge.path} not written")
        return
    backup = write_merge(merge)
    if backup is not None:
        click.echo(f"backup: {backup}")
    click.echo(f"wrote {merge.path}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@config_option
def models(as_json: bool, config_path: Path | None) -> None:
    """List the models: id, aliases, tier, window, prices, key and cooldown.

    Any other provider/model of a configured provider passes through to that provider.
    """
    import asyncio

    from .listing import read_models, render_models

    rows = asyncio.run(read_models(config_path))
    click.echo(json.dumps(rows, indent=2) if as_json else render_models(rows))
