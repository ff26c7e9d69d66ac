"""What a run reports: one line per snapshot, the credits, and the exit code (docs/operations.md);
and how a snapshot whose fetch or load failed ends (`classify`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dlt.common.exceptions import DltException

from .constants import STATUS_COMPLETE, STATUS_FAILED, STATUS_SKIPPED_BUDGET, STATUS_SUSPECT_EMPTY
from .errors import (
    AuthenticationError,
    BudgetExhausted,
    CreditsExhaustedError,
    EndpointError,
    RefdomainsError,
    SerpstatError,
    first_line,
)
from .targets import Target

if TYPE_CHECKING:
    from .planning import PlannedSnapshot

# A snapshot complete before the run started: reported, never fetched or paid for again.
ALREADY_COMPLETE = "already_complete"
OK_STATUSES = {STATUS_COMPLETE, STATUS_SUSPECT_EMPTY, ALREADY_COMPLETE}
_NAMED = 5  # snapshots a failure names before "and N more": the line stays one line


@dataclass
class SnapshotResult:
    """One line of a run's report."""

    target: Target
    kind: str
    snapshot_date: dt.date
    status: str
    rows: int = 0
    expected_total: int = 0
    credits: int = 0
    requests: int = 0
    error: str | None = None
    note: str | None = None  # about rows that loaded, e.g. unusable metric values loaded as NULL


def already_complete(planned: Iterable[PlannedSnapshot]) -> list[SnapshotResult]:
    """The report's lines for snapshots that were complete before the run started."""
    return [SnapshotResult(p.spec.target, p.spec.kind, p.spec.snapshot_date, ALREADY_COMPLETE,
                           rows=p.existing.rows_loaded, expected_total=p.existing.expected_total)
            for p in planned if p.existing is not None]


@dataclass
class RunReport:
    results: list[SnapshotResult] = field(default_factory=list)
    credits_spent: int = 0
    credits_left: int | None = None
    models_built: bool = False
    # why the models could not be rebuilt (the snapshots stay loaded); None when they were, or
    # were not asked for
    models_error: str | None = None
    # one line per alert channel (what was sent); failures are warnings, never the exit code
    alerts: list[str] = field(default_factory=list)
    # series fetched only as a tracked domain's competitors: their lines say so
    competitors: AbstractSet[Target] = frozenset()

    @property
    def exit_code(self) -> int:
        """0 when every snapshot is complete, already was, or is suspect_empty (warned) and the
        models were rebuilt; 1 otherwise (what loaded stays loaded)."""
        return 1 if self.failure else 0

    @property
    def failure(self) -> str | None:
        """Why the run exits 1, in one line: what `refdomains run` prints on stderr and what a
        scheduler's task fails with; None when every snapshot is fine and the models were built."""
        unfinished = [r for r in self.results if r.status not in OK_STATUSES]
        reasons = []
        if unfinished:
            named = ", ".join(f"{r.target} {r.kind} {r.status}" for r in unfinished[:_NAMED])
            more = f" and {len(unfinished) - _NAMED} more" if len(unfinished) > _NAMED else ""
            reasons.append(f"{len(unfinished)} snapshot{'s' if len(unfinished) > 1 else ''} not complete "
                           f"({named}{more}): completed snapshots are kept; run again to fetch the rest")
        if self.models_error:
            reasons.append(self.models_error)
        return "; ".join(reasons) or None

    def lines(self) -> list[str]:
        """What `refdomains run` prints: a table of the snapshots (target, kind, date, status, rows,
        credits), the errors and notes under it, the credits spent and left, the alerts sent."""
        header = ("target", "kind", "date", "status", "rows", "credits")
        table = [header] + [
            (f"{r.target} (competitor)" if r.target in self.competitors else str(r.target), r.kind,
             r.snapshot_date.isoformat(), r.status, str(r.rows), str(r.credits))
            for r in self.results
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
                 for row in table]
        for r in self.results:
            if r.error and r.status != STATUS_COMPLETE:
                lines.append(f"  {r.target} {r.kind}: {r.error}")
            if r.note and r.rows:
                lines.append(f"  {r.target} {r.kind}: {r.note}")
        left = "unknown" if self.credits_left is None else str(self.credits_left)
        return [*lines, f"credits spent: {self.credits_spent}, left: {left}", *self.alerts]


# Serpstat errors by what they do to a snapshot and to the run: (class, the snapshot's status,
# why no later snapshot can succeed either). The first class the error is an instance of decides.
_SERPSTAT_OUTCOMES: tuple[tuple[type[SerpstatError], str, str | None], ...] = (
    (CreditsExhaustedError, STATUS_SKIPPED_BUDGET, "Serpstat credits are exhausted"),
    (AuthenticationError, STATUS_FAILED, "Serpstat refused the token"),
    (EndpointError, STATUS_FAILED, "api_url does not lead to Serpstat's API"),
    (SerpstatError, STATUS_FAILED, None),
)


def classify(error: BaseException) -> tuple[str, str, str | None]:
    """How a snapshot whose fetch or load raised `error` ends: `(status, message, fatal)`.

    `status` is its ledger status, `message` the line its ledger row and the run's report show,
    and `fatal`, for an error that dooms every later snapshot of the run too (the token, the
    credits, the endpoint), the reason the run stops fetching; None otherwise.
    """
    if isinstance(error, BudgetExhausted):
        return STATUS_SKIPPED_BUDGET, f"{error}: raise max_credits_per_run or run again later", None
    for kind, status, fatal in _SERPSTAT_OUTCOMES:
        if isinstance(error, kind):
            return status, str(error), fatal
    if isinstance(error, RefdomainsError):
        return STATUS_FAILED, first_line(error), None
    if isinstance(error, (DltException, OSError)):
        return STATUS_FAILED, f"loading failed: {first_line(error)}", None
    return STATUS_FAILED, f"{type(error).__name__}: {first_line(error)}", None
