"""The ``lingyun`` command: one Typer app, each verb group in its own module."""

from __future__ import annotations

import typer

from lingyun.cli import deploy, keys, serve, tenants, worker

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Lingyun, a self-hosted AI cloud."
)
app.command("serve")(serve.serve)
app.add_typer(tenants.tenants, name="tenants")
app.add_typer(tenants.projects, name="projects")
app.add_typer(keys.keys, name="keys")
app.add_typer(deploy.models, name="models")
app.command("deploy")(deploy.deploy)
app.command("undeploy")(deploy.undeploy)
app.command("worker", help="Run one replica of an engine behind an OpenAI-compatible server.")(
    worker.worker
)

if __name__ == "__main__":
    app()
