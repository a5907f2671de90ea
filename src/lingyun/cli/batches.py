"""``lingyun batches``: the Batch API from the shell (create, list, show, cancel, download).

These verbs are a client of a running server's ``/v1`` (like any OpenAI client), so they
need its URL and an API key: ``--base-url`` / ``LINGYUN_BASE_URL`` and ``--api-key`` /
``LINGYUN_API_KEY``; the key decides the tenant and project, as it does for every request.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from lingyun.cli.common import JsonOpt, emit_json, fail

batches = typer.Typer(no_args_is_help=True, help="Batch jobs: JSONL files run in spare capacity.")

BaseUrlOpt = Annotated[
    str,
    typer.Option("--base-url", envvar="LINGYUN_BASE_URL", help="The server's URL."),
]
ApiKeyOpt = Annotated[
    str, typer.Option("--api-key", envvar="LINGYUN_API_KEY", help="An API key (sk-ly-...).")
]
TERMINAL = {"completed", "failed", "expired", "cancelled"}


def _client(base_url: str, api_key: str) -> httpx.Client:
    return httpx.Client(
        base_url=base_url.rstrip("/") + "/v1",
        headers={"authorization": f"Bearer {api_key}"},
        timeout=60,
    )


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        resp = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        fail(f"cannot reach {client.base_url}: {exc}")
    if resp.status_code >= 400:
        try:
            message = resp.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = resp.text
        fail(f"{resp.status_code}: {message}")
    return resp


def _summary(b: dict[str, Any]) -> str:
    c = b.get("request_counts") or {}
    return (
        f"{b['id']}  {b['status']:<11} {c.get('completed', 0)}/{c.get('total', 0)} done, "
        f"{c.get('failed', 0)} failed  {b['endpoint']}"
    )


@batches.command("create")
def create(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL input.")],
    endpoint: Annotated[str, typer.Option("--endpoint", help="e.g. /v1/chat/completions")],
    base_url: BaseUrlOpt = "http://127.0.0.1:8000",
    api_key: ApiKeyOpt = "",
    window: Annotated[str, typer.Option("--window", help="Completion window.")] = "24h",
    wait: Annotated[bool, typer.Option("--wait", help="Wait, with progress, to the end.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Upload FILE and start a batch on it."""
    with _client(base_url, api_key) as client:
        with file.open("rb") as fh:
            uploaded = _call(
                client,
                "POST",
                "/files",
                files={"file": (file.name, fh)},
                data={"purpose": "batch"},
            ).json()
        body = {"input_file_id": uploaded["id"], "endpoint": endpoint, "completion_window": window}
        batch = _call(client, "POST", "/batches", json=body).json()
        if wait:
            batch = _wait(client, batch["id"])
    if as_json:
        emit_json(batch)
    else:
        typer.echo(_summary(batch))
    if wait and batch["status"] != "completed":
        raise typer.Exit(code=1)


def _wait(client: httpx.Client, batch_id: str) -> dict[str, Any]:
    with typer.progressbar(length=1, label=batch_id, file=sys.stderr) as bar:
        shown = 0
        while True:
            batch: dict[str, Any] = _call(client, "GET", f"/batches/{batch_id}").json()
            counts = batch.get("request_counts") or {}
            total = int(counts.get("total") or 0)
            done = int(counts.get("completed") or 0) + int(counts.get("failed") or 0)
            if total and bar.length != total:
                bar.length = total
            if done > shown:
                bar.update(done - shown)
                shown = done
            if batch["status"] in TERMINAL:
                return batch
            time.sleep(0.5)


@batches.command("list")
def list_batches(
    base_url: BaseUrlOpt = "http://127.0.0.1:8000",
    api_key: ApiKeyOpt = "",
    limit: Annotated[int, typer.Option("--limit", min=1, max=100)] = 20,
    after: Annotated[
        str | None, typer.Option("--after", help="Last id of the previous page.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Batches of the key's project, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if after:
        params["after"] = after
    with _client(base_url, api_key) as client:
        page = _call(client, "GET", "/batches", params=params).json()
    if as_json:
        emit_json(page)
        return
    for b in page["data"]:
        typer.echo(_summary(b))
    if page["has_more"]:
        typer.echo(f"more: --after {page['last_id']}")


@batches.command("show")
def show(
    batch_id: str, base_url: BaseUrlOpt = "http://127.0.0.1:8000", api_key: ApiKeyOpt = ""
) -> None:
    """One batch, as JSON."""
    with _client(base_url, api_key) as client:
        emit_json(_call(client, "GET", f"/batches/{batch_id}").json())


@batches.command("cancel")
def cancel(
    batch_id: str, base_url: BaseUrlOpt = "http://127.0.0.1:8000", api_key: ApiKeyOpt = ""
) -> None:
    """Stop a batch; lines already run keep their results."""
    with _client(base_url, api_key) as client:
        typer.echo(_summary(_call(client, "POST", f"/batches/{batch_id}/cancel").json()))


@batches.command("download")
def download(
    batch_id: str,
    out: Annotated[Path, typer.Option("--out", help="Directory for the files.")] = Path("."),
    base_url: BaseUrlOpt = "http://127.0.0.1:8000",
    api_key: ApiKeyOpt = "",
) -> None:
    """Save a batch's output and error files as <id>_output.jsonl and <id>_error.jsonl."""
    with _client(base_url, api_key) as client:
        batch = _call(client, "GET", f"/batches/{batch_id}").json()
        out.mkdir(parents=True, exist_ok=True)
        for field, name in (("output_file_id", "output"), ("error_file_id", "error")):
            if batch.get(field):
                data = _call(client, "GET", f"/files/{batch[field]}/content").content
                path = out / f"{batch_id}_{name}.jsonl"
                path.write_bytes(data)
                typer.echo(f"{path}  {len(data)} bytes")
