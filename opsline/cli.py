"""The `opsline` command: apply apps, run builds, list packages, use markets, follow events."""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from rich.console import Console
from rich.live import Live
from rich.text import Text
from typer.core import TyperGroup

from opsline import cli_identity, render
from opsline.client import (
    DEFAULT_URL,
    OpslineClient,
    OpslineError,
    config_path,
    read_config,
    write_config,
)

POLL_INTERVAL = 0.5
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


class _Root(TyperGroup):
    """Any OpslineError below becomes one red line on stderr and exit code 1."""

    def invoke(self, ctx: Any) -> Any:  # Any: typer's Context type lives in a private module
        try:
            return super().invoke(ctx)
        except OpslineError as exc:
            _fail(str(exc))


class _BuildGroup(TyperGroup):
    """`opsline build APP` means `opsline build start APP`; status and cancel stay commands."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["start", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_Root,
    help="Deliver and watch applications on opsline, through its gateway.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
apps = typer.Typer(help="The application catalogue.", no_args_is_help=True)
builds = typer.Typer(
    cls=_BuildGroup,
    help="Build an app (opsline build APP [--wait]), or look at a build (status, cancel).",
    no_args_is_help=True,
)
packages = typer.Typer(help="Package versions, the output of builds.", no_args_is_help=True)
market = typer.Typer(
    help="Publish package versions to a market and install them.", no_args_is_help=True
)
events = typer.Typer(help="Publish CloudEvents and follow the live stream.", no_args_is_help=True)
app.add_typer(apps, name="app")
app.add_typer(builds, name="build")
app.add_typer(packages, name="package")
app.add_typer(market, name="market")
app.add_typer(events, name="events")
instances = typer.Typer(help="Instances: roll back, uninstall, list.", no_args_is_help=True)
app.add_typer(instances, name="instance")
deployments = typer.Typer(
    help="Deployments: retry one waiting for an operator, terminate one in progress.",
    no_args_is_help=True,
)
app.add_typer(deployments, name="deployment")
clusters = typer.Typer(help="Kubernetes clusters that launch targets name.", no_args_is_help=True)
app.add_typer(clusters, name="cluster")
cli_identity.register(app)

MarketOpt = Annotated[str, typer.Option("--market", help="market URL (a directory or s3://…)")]


@dataclass(frozen=True, slots=True)
class _Globals:
    url: str | None
    token: str | None


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(help="gateway URL (else OPSLINE_URL, the config file, http://127.0.0.1:8080)"),
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="API token (else OPSLINE_TOKEN, the config file)")
    ] = None,
) -> None:
    ctx.obj = _Globals(url, token)


def _client(ctx: typer.Context) -> OpslineClient:
    opts = ctx.find_object(_Globals) or _Globals(None, None)
    return OpslineClient(opts.url, opts.token)


def _out() -> Console:
    return Console(highlight=False)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


def _fail(message: str) -> NoReturn:
    _err().print(Text(f"error: {message}", style="red"), soft_wrap=True)
    raise typer.Exit(1)


# app


@apps.command("apply")
def app_apply(
    ctx: typer.Context,
    file: Annotated[Path, typer.Option("-f", "--file", help="the app's opsline.yaml")] = Path(
        "opsline.yaml"
    ),
) -> None:
    """Create or update an app from its opsline.yaml and show what changed."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        _fail(f"no such file: {file}")
    except IsADirectoryError:
        _fail(f"{file} is a directory; pass the app's opsline.yaml")
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror}")
    except UnicodeDecodeError:
        _fail(f"{file} is not UTF-8 text")
    _check_yaml(file, text)
    with _client(ctx) as ops:
        result = ops.apply_app(text, Path(os.path.abspath(file)).parent)
    out = _out()
    action = str(result.get("action", "applied"))
    changes = result.get("changes") or []
    summary = f" ({len(changes)} change{'s' if len(changes) != 1 else ''})" if changes else ""
    out.print(Text.assemble((str(result.get("app", "?")), "bold"), f": {action}{summary}"))
    for change in changes:
        out.print(render.change_line(change), soft_wrap=True)


def _check_yaml(path: Path, text: str) -> None:
    """Refuse broken YAML here, with its line and column, before the server sees it."""
    try:
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = exc.problem or "invalid syntax"
        context = f" ({exc.context})" if exc.context else ""
        _fail(f"{where}: invalid YAML: {problem}{context}")
    except yaml.YAMLError as exc:
        _fail(f"{path}: invalid YAML: {exc}")
    if not isinstance(doc, dict):
        found = "nothing" if doc is None else f"a {type(doc).__name__}"
        _fail(f"{path}: an app is a YAML mapping (apiVersion, kind, meta, …); found {found}")


@apps.command("list")
def app_list(ctx: typer.Context) -> None:
    """The apps in the catalogue."""
    with _client(ctx) as ops:
        items = ops.list_apps().get("apps") or []
    if not items:
        _out().print("no apps yet: opsline app apply -f opsline.yaml")
        return
    _out().print(render.apps_table(items))


# build


@builds.command("start")
def build_start(
    ctx: typer.Context,
    app_name: Annotated[str, typer.Argument(metavar="APP", help="the app to build")],
    component: Annotated[str | None, typer.Option(help="build only this component")] = None,
    version: Annotated[str | None, typer.Option(help="the version (default: the next)")] = None,
    wait: Annotated[bool, typer.Option(help="follow the build until it ends")] = False,
) -> None:
    """Start a build of APP (also: opsline build APP)."""
    out = _out()
    with _client(ctx) as ops:
        started = ops.start_build(app_name, component=component, version=version)
        build_id = str(started.get("build_id"))
        out.print(
            Text.assemble(
                f"build {build_id}: {app_name} version {started.get('version')} ",
                render.styled(started.get("status", "QUEUED")),
            )
        )
        if not wait:
            out.print(f"follow it: opsline build status {build_id}")
            return
        code = _wait_for_build(ops, build_id, out)
    raise typer.Exit(code)


def _wait_for_build(ops: OpslineClient, build_id: str, out: Console) -> int:
    """Show the build until it ends; its exit code (130: interrupted, cancel asked).

    On a terminal the steps are a live table; elsewhere (CI logs, pipes) each step's
    status changes are printed as lines. New log lines are printed as they appear."""
    live = Live(console=out, refresh_per_second=8) if out.is_terminal else None
    logged: dict[str, int] = {}
    statuses: dict[str, str] = {}
    build: dict[str, Any] = {}
    try:
        with live or nullcontext():
            while True:
                build = ops.get_build(build_id)
                if live is not None:
                    live.update(render.build_view(build), refresh=True)
                for step in build.get("steps") or []:
                    name = render.step_name(step)
                    status = str(step.get("status", "?"))
                    if live is None and statuses.get(name) != status:
                        out.print(Text.assemble(f"{name} ", render.styled(status)))
                    statuses[name] = status
                    log = step.get("log") or []
                    for line in log[logged.get(name, 0) :]:
                        out.print(render.log_line(name, line), soft_wrap=True)
                    logged[name] = len(log)
                if build.get("status") in TERMINAL:
                    break
                time.sleep(POLL_INTERVAL)
    except KeyboardInterrupt:
        err = _err()
        err.print(f"interrupted: asking the gateway to cancel build {build_id}")
        try:
            ops.cancel_build(build_id)
        except OpslineError as exc:
            err.print(Text(f"could not cancel build {build_id}: {exc}", style="red"))
        else:
            err.print(f"cancel requested for build {build_id}")
        return 130
    outcome = build.get("status")
    if outcome == "SUCCEEDED":
        out.print(Text(f"build {build_id} succeeded: version {build.get('version')}", "green"))
        return 0
    reason = build.get("reason") or "no reason given"
    verb = "failed" if outcome == "FAILED" else "was cancelled"
    _err().print(Text(f"build {build_id} {verb}: {reason}", style="red"), soft_wrap=True)
    return 1


@builds.command("status")
def build_status(
    ctx: typer.Context,
    build_id: Annotated[str, typer.Argument(metavar="ID")],
    logs: Annotated[bool, typer.Option(help="print every step's log")] = False,
) -> None:
    """A build's status, steps, artifacts and failure reason."""
    with _client(ctx) as ops:
        build = ops.get_build(build_id)
    out = _out()
    out.print(render.build_view(build, live=False))
    for artifact in build.get("artifacts") or []:
        out.print(f"artifact {render.artifact(artifact)}", soft_wrap=True)
    if build.get("reason"):
        out.print(Text(f"reason: {build['reason']}", style="red"), soft_wrap=True)
    if logs:
        for step in build.get("steps") or []:
            for line in step.get("log") or []:
                out.print(render.log_line(render.step_name(step), line), soft_wrap=True)


@builds.command("cancel")
def build_cancel(
    ctx: typer.Context, build_id: Annotated[str, typer.Argument(metavar="ID")]
) -> None:
    """Ask the build service to cancel a build."""
    with _client(ctx) as ops:
        result = ops.cancel_build(build_id)
    status = result.get("status")
    _out().print(f"cancel requested for build {build_id}" + (f": {status}" if status else ""))


# deployments

DEPLOY_FINAL = ("SUCCESS", "FAILURE", "WAIT_FOR_OP", "TERMINATED", "ROLLED_BACK")


@app.command("deploy")
def deploy(
    ctx: typer.Context,
    file: Annotated[Path, typer.Option("-f", "--file", help="the launch file")] = Path(
        "launch.yaml"
    ),
    wait: Annotated[bool, typer.Option("--wait", help="follow it to the end")] = False,
) -> None:
    """Launch (or upgrade) an instance from a launch file."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        _fail(f"no such file: {file}")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read {file}: {exc}")
    _check_yaml(file, text)
    with _client(ctx) as ops:
        result = ops.deploy(text)
        out = _out()
        out.print(
            f"deployment {result['id']}: {result['kind']} of {result['app']} "
            f"{result['version']} on {result['instance']}"
        )
        if wait:
            raise typer.Exit(_follow_deployment(ops, str(result["id"]), out))


def _follow_deployment(
    ops: OpslineClient, deployment_id: str, out: Console, *, leaving: str = ""
) -> int:
    """Print each change until the deployment ends; `leaving` is a state it is known to be
    about to leave (a retried WAIT_FOR_OP), which does not count as its end."""
    seen: dict[str, str] = {}
    state = ""
    give_up = time.monotonic() + 60
    while True:
        current = ops.get_deployment(deployment_id)
        if leaving and current["state"] == leaving and time.monotonic() < give_up:
            time.sleep(0.5)
            continue
        leaving = ""
        if current["state"] != state:
            state = current["state"]
            out.print(f"  {state}" + (f": {current['reason']}" if current.get("reason") else ""))
        for component in current.get("components") or []:
            line = component.get("state", "")
            if seen.get(component["name"]) != line:
                seen[component["name"]] = line
                reason = f" ({component['reason']})" if component.get("reason") else ""
                out.print(f"    {component['name']}: {line}{reason}")
        if state in DEPLOY_FINAL:
            ok = state == "SUCCESS"
            colour = "green" if ok else "red"
            out.print(f"[{colour}]deployment {deployment_id} {state.lower()}[/{colour}]")
            return 0 if ok else 1
        time.sleep(0.5)


@deployments.command("retry")
def deployment_retry(
    ctx: typer.Context, deployment_id: str, wait: Annotated[bool, typer.Option("--wait")] = False
) -> None:
    """Run a deployment that waits for an operator (WAIT_FOR_OP) or failed, again."""
    with _client(ctx) as ops:
        result = ops.retry_deployment(deployment_id)
        _out().print(f"deployment {deployment_id}: retry of {result['instance']} requested")
        if wait:
            raise typer.Exit(
                _follow_deployment(ops, deployment_id, _out(), leaving=str(result["state"]))
            )


@deployments.command("terminate")
def deployment_terminate(ctx: typer.Context, deployment_id: str) -> None:
    """Stop a deployment that has not finished (it ends TERMINATED)."""
    with _client(ctx) as ops:
        result = ops.terminate_deployment(deployment_id)
    _out().print(f"deployment {deployment_id}: termination of {result['instance']} requested")


@clusters.command("add")
def cluster_add(
    ctx: typer.Context,
    name: str,
    kubeconfig: Annotated[Path, typer.Option(help="a self-contained kubeconfig file")],
    context: Annotated[str | None, typer.Option(help="default: its current-context")] = None,
) -> None:
    """Register (or replace) a cluster; its kubeconfig is stored encrypted."""
    try:
        text = kubeconfig.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read {kubeconfig}: {exc}")
    with _client(ctx) as ops:
        result = ops.register_cluster(name, text, context)
    reach = (
        f"reachable, Kubernetes {result.get('version')}"
        if result.get("reachable")
        else f"NOT reachable from deploy: {result.get('error')}"
    )
    _out().print(f"cluster {name}: {result['server']} (context {result['context']}), {reach}")


@clusters.command("list")
def cluster_list(ctx: typer.Context) -> None:
    """Registered clusters (no credentials are ever shown)."""
    with _client(ctx) as ops:
        rows = ops.list_clusters().get("clusters", [])
    for row in rows:
        _out().print(f"{row['name']}  {row['server']}  context {row['context']}")


@clusters.command("remove")
def cluster_remove(ctx: typer.Context, name: str) -> None:
    """Forget a cluster (refused while instances run on it)."""
    with _client(ctx) as ops:
        ops.remove_cluster(name)
    _out().print(f"cluster {name} removed")


@instances.command("list")
def instance_list(ctx: typer.Context) -> None:
    """Instances with their version, revision and state."""
    with _client(ctx) as ops:
        rows = ops.list_instances().get("instances", [])
    for row in rows:
        _out().print(
            f"{row['id']}  {row['app']} {row['version']}  revision {row['revision']}"
            f"  {row['state']}  {row['cluster']}/{row['namespace']}"
        )


@instances.command("logs")
def instance_logs(
    ctx: typer.Context,
    instance: str,
    component: Annotated[str | None, typer.Option(help="one component only")] = None,
    tail: Annotated[int, typer.Option(min=1, max=500)] = 100,
) -> None:
    """What an instance's processes printed last (local runtime)."""
    with _client(ctx) as ops:
        found = ops.instance_logs(instance, component, tail).get("components", {})
    for name, lines in found.items():
        for line in lines:
            _out().print(f"{name} | {line}", markup=False, highlight=False)


@instances.command("rollback")
def instance_rollback(
    ctx: typer.Context,
    instance: str,
    revision: Annotated[int, typer.Option(help="0: the last good one before now")] = 0,
    wait: Annotated[bool, typer.Option("--wait")] = False,
) -> None:
    """Roll an instance back to an earlier revision."""
    with _client(ctx) as ops:
        result = ops.rollback(instance, revision)
        _out().print(f"deployment {result['id']}: rollback of {instance}")
        if wait:
            raise typer.Exit(_follow_deployment(ops, str(result["id"]), _out()))


@instances.command("uninstall")
def instance_uninstall(
    ctx: typer.Context, instance: str, wait: Annotated[bool, typer.Option("--wait")] = False
) -> None:
    """Stop and remove everything an instance runs."""
    with _client(ctx) as ops:
        result = ops.uninstall(instance)
        _out().print(f"deployment {result['id']}: uninstall of {instance}")
        if wait:
            raise typer.Exit(_follow_deployment(ops, str(result["id"]), _out()))


# package


@packages.command("list")
def package_list(
    ctx: typer.Context, app_name: Annotated[str, typer.Argument(metavar="APP")]
) -> None:
    """An app's package versions and their artifacts."""
    with _client(ctx) as ops:
        items = ops.list_packages(app_name).get("packages") or []
    if not items:
        _out().print(f"{app_name} has no package yet: opsline build {app_name}")
        return
    _out().print(render.packages_table(items))


# market


@market.command("publish")
def market_publish(
    ctx: typer.Context,
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    version: Annotated[str, typer.Argument(metavar="VERSION")],
    url: MarketOpt,
) -> None:
    """Publish a package version to a market."""
    with _client(ctx) as ops:
        ops.market_publish(app_name, version, url)
    _out().print(f"published {app_name} {version} to {url}")


@market.command("list")
def market_list(ctx: typer.Context, url: MarketOpt) -> None:
    """The package versions in a market."""
    with _client(ctx) as ops:
        items = ops.market_list(url).get("packages") or []
    if not items:
        _out().print(f"the market {url} is empty")
        return
    _out().print(render.market_table(items))


@market.command("install")
def market_install(
    ctx: typer.Context,
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    version: Annotated[str, typer.Argument(metavar="VERSION")],
    url: MarketOpt,
) -> None:
    """Install a package version from a market into the catalogue."""
    with _client(ctx) as ops:
        ops.market_install(url, app_name, version)
    _out().print(f"installed {app_name} {version} from {url}")


# events


@events.command("publish")
def events_publish(
    ctx: typer.Context,
    event_type: Annotated[str, typer.Argument(metavar="TYPE", help="e.g. com.example.ci.done")],
    source: Annotated[str, typer.Option(help="who sends it (CloudEvents source)")],
    data: Annotated[str, typer.Option(help="the data as JSON, or @FILE")],
    subject: Annotated[str | None, typer.Option(help="what it is about")] = None,
    event_id: Annotated[
        str | None, typer.Option("--id", help="event id (default: a new UUID)")
    ] = None,
) -> None:
    """Publish one CloudEvent."""
    payload = _json_option(data)
    with _client(ctx) as ops:
        result = ops.publish(event_type, source, payload, subject=subject, id=event_id)
    out = _out()
    for accepted in result.get("accepted") or []:
        out.print(f"accepted {accepted}")
    for rejected in result.get("rejected") or []:
        reason = rejected.get("reason") if isinstance(rejected, dict) else rejected
        out.print(Text(f"rejected in part: {reason}", style="yellow"), soft_wrap=True)


def _json_option(data: str) -> Any:
    where = "--data"
    if data.startswith("@"):
        where = data[1:]
        try:
            data = Path(where).read_text(encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot read {where}: {exc.strerror}")
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        _fail(f"{where} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")


@events.command("follow")
def events_follow(
    ctx: typer.Context,
    types: Annotated[
        list[str] | None, typer.Option("--type", "-t", help="type prefix; may repeat")
    ] = None,
    subject: Annotated[str | None, typer.Option(help="only this subject")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON event per line")] = False,
) -> None:
    """Print events live until Ctrl-C."""
    out = _out()
    try:
        with _client(ctx) as ops:
            for event in ops.stream_events(types or (), subject):
                if as_json:
                    sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
                    sys.stdout.flush()
                else:
                    out.print(render.event_line(event), soft_wrap=True)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    _err().print("the gateway closed the stream", style="dim")


# login


@app.command()
def login(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(help="gateway URL")] = None,
    token: Annotated[str | None, typer.Option(help="API token (asked for when omitted)")] = None,
    verify: Annotated[bool, typer.Option(help="check the token against the gateway")] = True,
) -> None:
    """Save the gateway URL and token to the config file (mode 0600)."""
    opts = ctx.find_object(_Globals) or _Globals(None, None)
    path = config_path()
    url = url or opts.url or read_config(path).get("url") or DEFAULT_URL
    token = token or opts.token
    if not token:
        if not sys.stdin.isatty():
            _fail("login needs --token (the stack's admin token is in .opsline/admin-token)")
        token = typer.prompt("token", hide_input=True)
    # The client checks the form of both even when the gateway is not asked.
    with OpslineClient(url, token, env={}, config_file=path) as ops:
        if verify:
            try:
                ops.list_apps()
            except OpslineError as exc:
                if exc.status != 401:
                    raise
                _fail(f"the gateway at {ops.url} refused the token: {exc.detail}")
    write_config(path, url=ops.url, token=token.strip())
    _out().print(f"saved the gateway URL and token to {path} (mode 0600)")
