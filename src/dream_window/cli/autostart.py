"""``dream-window autostart enable|disable|status``: start the dream when you log on.

What each platform gets is :mod:`dream_window.autostart`'s docstring. Every subcommand takes
``--dry-run``: it prints the file it would write (path and content) and the exact commands, and
changes nothing. ``status`` exits 0 when autostart is enabled, 1 when it is not.

The host (platform, home, environment, interpreter) and the command runner come from the click
context object when there is an :class:`AutostartDeps` there (tests pass one to
``main(obj=...)``), else from this machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from dream_window.autostart import (
    AutostartPlan,
    Host,
    Runner,
    Step,
    disable,
    enable,
    plan_for,
    run_command,
    status,
)
from dream_window.cli.common import fail, load
from dream_window.errors import AutostartError
from dream_window.user_dirs import UserDirs, user_dirs


@dataclass(frozen=True)
class AutostartDeps:
    host: Host
    runner: Runner


def _deps() -> AutostartDeps:
    ctx = click.get_current_context()
    found = ctx.find_object(AutostartDeps)
    return found if found is not None else AutostartDeps(Host.current(), run_command)


def _plan(deps: AutostartDeps, dirs: UserDirs, config: Path) -> AutostartPlan:
    try:
        return plan_for(deps.host, config, dirs)
    except AutostartError as exc:
        fail(str(exc))


def _installed_plan(deps: AutostartDeps) -> AutostartPlan:
    """The plan ``disable`` and ``status`` act on: they need only its names (task, unit, agent,
    file), which do not depend on the config it runs."""
    dirs = user_dirs(deps.host.platform)
    return _plan(deps, dirs, dirs.config_file)


def _show_steps(plan: AutostartPlan, steps: tuple[Step, ...]) -> None:
    for step in steps:
        note = f"   ({step.why})" if step.why else ""
        click.echo(f"  {plan.show(step.argv)}{note}")


def _notes(plan: AutostartPlan) -> None:
    for note in plan.notes:
        click.echo(f"note: {note}", err=True)


dry_run_option = click.option("--dry-run", is_flag=True, help="Print what would be done; change nothing.")


@click.group("autostart")
def autostart_group() -> None:
    """Start the dream when you log on: a Task Scheduler task (Windows), a systemd user unit
    (Linux) or a LaunchAgent (macOS)."""


@autostart_group.command("enable")
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The config the dream starts with (default: your config from `dream-window init`).",
)
@dry_run_option
def enable_cmd(config_path: Path | None, dry_run: bool) -> None:
    """Start the dream now and at every logon."""
    deps = _deps()
    dirs = user_dirs(deps.host.platform)
    if config_path is None:
        config = dirs.config_file
        if not config.is_file():
            fail(f"no config at {config} yet: write it with `dream-window init` (or give --config FILE)", 2)
    else:
        config = config_path.expanduser().resolve()
        if not config.is_file():
            fail(f"config file {config_path} does not exist", 2)
    load(config)  # a config error now, on the console, not at the next logon where no one sees it
    plan = _plan(deps, dirs, config)
    if dry_run:
        click.echo(f"would write {plan.file}:")
        click.echo(plan.file_text(), nl=False)
        click.echo("would run:")
        _show_steps(plan, plan.enable)
        _notes(plan)
        return
    try:
        enable(plan, deps.runner)
    except AutostartError as exc:
        fail(str(exc))
    click.echo(f"autostart enabled ({plan.file}): the dream runs now and at every logon, with {config}")
    _notes(plan)


@autostart_group.command("disable")
@dry_run_option
def disable_cmd(dry_run: bool) -> None:
    """Stop starting the dream at logon."""
    deps = _deps()
    plan = _installed_plan(deps)
    if dry_run:
        click.echo("would run:")
        _show_steps(plan, plan.disable)
        click.echo(f"would remove {plan.file}")
        if plan.after_removal:
            click.echo("then run:")
            _show_steps(plan, plan.after_removal)
        return
    try:
        done = disable(plan, deps.runner)
    except AutostartError as exc:
        fail(str(exc))
    click.echo("autostart disabled" if done else "autostart was not enabled")


@autostart_group.command("status")
@dry_run_option
def status_cmd(dry_run: bool) -> None:
    """Whether the dream starts at logon (exit 0) or not (exit 1)."""
    deps = _deps()
    plan = _installed_plan(deps)
    if dry_run:
        click.echo("would run:")
        _show_steps(plan, plan.query)
        return
    try:
        found = status(plan, deps.runner)
    except AutostartError as exc:
        fail(str(exc))
    click.echo(f"autostart {'enabled' if found.enabled else 'not enabled'}: {found.detail}")
    raise SystemExit(0 if found.enabled else 1)
