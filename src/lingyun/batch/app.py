"""The batch plane's parts, built from settings for ``app.py`` (one start, one stop)."""

from __future__ import annotations

from dataclasses import dataclass

from lingyun.batch.files import FileLimits, FileStore
from lingyun.batch.runner import BatchRunner
from lingyun.batch.service import BatchService
from lingyun.config import Settings
from lingyun.gateway.pipeline import Gateway
from lingyun.store.changes import ChangeFeed
from lingyun.store.db import Database


@dataclass
class BatchPlane:
    files: FileStore
    service: BatchService
    runner: BatchRunner

    @classmethod
    def build(
        cls, settings: Settings, db: Database, gateway: Gateway, feed: ChangeFeed | None = None
    ) -> BatchPlane:
        root = settings.files_dir or settings.data_dir / "files"
        limits = FileLimits(settings.batch_max_file_bytes, settings.batch_max_lines)
        files = FileStore(db, root, limits)
        service = BatchService(
            db, files, max_active_per_tenant=settings.batch_max_active_per_tenant
        )
        runner = BatchRunner(
            db,
            files,
            gateway,
            owner=settings.instance_owner(),
            concurrency=settings.batch_concurrency,
            feed=feed,
        )
        return cls(files, service, runner)

    async def start(self) -> None:
        await self.runner.start()

    async def stop(self) -> None:
        await self.runner.stop()
