"""The ``lingyun`` command: one Typer app, each verb group in its own module."""

from __future__ import annotations

import typer

from lingyun.cli import (
    access,
    batches,
    billing,
    channels,
    deploy,
    keys,
    limits,
    serve,
    tenants,
    top,
    worker,
)

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Lingyun, a self-hosted AI cloud."
)
app.command("serve")(serve.serve)
app.command("top")(top.top)
app.add_typer(tenants.tenants, name="tenants")
app.add_typer(tenants.projects, name="projects")
app.add_typer(keys.keys, name="keys")
app.add_typer(limits.limits, name="limits")
app.add_typer(deploy.models, name="models")
deploy.models.command("grant")(access.grant)
deploy.models.command("revoke")(access.revoke)
app.add_typer(access.admin, name="admin")
app.command("audit")(access.audit)
app.command("deploy")(deploy.deploy)
app.command("undeploy")(deploy.undeploy)
app.add_typer(batches.batches, name="batches")
app.add_typer(billing.prices, name="prices")
app.add_typer(channels.channels, name="channels")
app.add_typer(channels.adapters, name="adapters")
app.add_typer(billing.budgets, name="budgets")
app.add_typer(billing.quota, name="quota")
app.command("topup")(billing.topup)
app.command("balance")(billing.balance)
app.command("usage")(billing.usage)
app.command("invoice")(billing.invoice)
app.command("free-only")(billing.free_only)
app.command("worker", help="Run one replica of an engine behind an OpenAI-compatible server.")(
    worker.worker
)

if __name__ == "__main__":
    app()
