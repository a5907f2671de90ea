"""The metering journal's lag on /metrics: what is queued for it and how long commits take.

``lingyun_journal_queued_reservations`` and ``lingyun_journal_unsettled_requests`` are read
at scrape time from ``Journal.backlog()`` (reservations, and finished requests whose
settlement is not yet committed); ``lingyun_journal_commit_seconds`` is a histogram the
journal's commit task feeds once per batch (``Journal.commit_seconds``), never per request.
A journal that keeps up shows zero queued between scrapes and commits in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from lingyun.observability import metrics

if TYPE_CHECKING:
    from lingyun.metering.journal import Journal


class JournalCollector:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def collect(self) -> Iterator[Metric]:
        reserves, settles = self.journal.backlog()
        yield GaugeMetricFamily(
            "lingyun_journal_queued_reservations",
            "Reservations queued for the metering journal and not yet committed.",
            value=reserves,
        )
        yield GaugeMetricFamily(
            "lingyun_journal_unsettled_requests",
            "Finished requests whose settlement the metering journal has not committed yet.",
            value=settles,
        )


def watch(journal: Journal) -> JournalCollector:
    """Time the journal's batch commits and read its backlog at each scrape."""
    journal.commit_seconds = metrics.JOURNAL_COMMIT.observe
    return JournalCollector(journal)
