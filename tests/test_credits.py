"""Credits for results over the depth cap, counted from the emulator's log (emulator depth cap
500, pages of 100: the same arithmetic as Serpstat's 60,000 at 1,000, a hundred times smaller)."""

from __future__ import annotations

import datetime as dt
import json

from serpstat_refdomains.constants import DEPTH_CAP
from serpstat_refdomains.windows import MIN_WINDOW, plan_cost, plan_windows
from tests.helpers import ledger, loaded_domains, ref_requests, run_pipeline, truth

CAP, SIZE, TOTAL = 500, 100, 1200


def leaves_of(row: dict) -> list[int]:
    return [leaf["total"] for leaf in json.loads(row["partition_plan"])]


def reads(row: dict, size: int = SIZE, cap: int = DEPTH_CAP, from_plan: bool = False) -> list[tuple[int, bool]]:
    """(rows, is a tail) of each read of a pull over `row`'s leaves. A pull from a plan (the index
    unchanged since, so the plan's sizes are the leaves') reads the leaves of at most 3/4 of a
    window together, in plan order, as long as a group stays within 3/4 of a window."""
    leaves = json.loads(row["partition_plan"])
    if not from_plan:
        return [(leaf["total"], bool(leaf.get("tail"))) for leaf in leaves]
    small = min(max(size, MIN_WINDOW), cap) * 3 // 4
    out: list[tuple[int, bool]] = []
    group: int | None = None  # index in out of the open group
    for leaf in leaves:
        total, tail = leaf["total"], bool(leaf.get("tail"))
        if tail or total > small:
            out.append((total, tail))
        elif group is not None and out[group][0] + total <= small:
            out[group] = (out[group][0] + total, False)
        else:
            group = len(out)
            out.append((total, False))
    return out


def read_cost(row: dict, size: int = SIZE, cap: int = DEPTH_CAP, from_plan: bool = False) -> int:
    """Credits of reading every leaf of `row`'s plan in overlapping windows of up to `size` rows
    (at least MIN_WINDOW): a prefix's rows and the rows its windows share; the names no prefix
    reaches are read one row further, to the first name a prefix reaches (their count alone
    could be stale), and then from the other end, one row: the lowest name, a prefix's (none of
    these names sorts there)."""
    window = min(max(size, MIN_WINDOW), cap)
    cost = 0
    for total, tail in reads(row, size, cap, from_plan):
        if not tail:
            cost += plan_cost(plan_windows(total, window, cap, first=(1, window)), total)[1] if total else 0
            continue
        cost += plan_cost(plan_windows(total + 1, window, cap), total + 1)[1] + 1
    return cost


def served_before(cap: int, total: int, size: int = SIZE) -> tuple[int, int]:
    """A first pull that believes the window is DEPTH_CAP reads `total` rows in its planned
    windows until one starts past Serpstat's real window `cap`, which is refused: (the rows
    paid before it, the refused window's page)."""
    paid = 0
    for page, width in plan_windows(total, size, first=(1, size)):
        start = (page - 1) * width
        if start >= cap:
            return paid, page
        paid += min(page * width, total) - start
    raise AssertionError("no window past the cap")


def from_the_plan(row: dict, cap: int, size: int = SIZE) -> int:
    """Credits of a pull that starts from `row`'s leaves, the index unchanged, beyond the rows its
    windows read: a 1-row probe for a prefix that held more than half the window, 1 for a read
    that is empty (its page 1 answers empty: one for all the empty leaves read together), a 1-row
    count for the names no prefix reaches (its size is what that count leaves)."""
    read = reads(row, size, cap, from_plan=True)
    prefixes = [total for total, tail in read if not tail]
    tails = [total for total, tail in read if tail]
    return sum(1 for t in prefixes if t > cap // 2) + prefixes.count(0) + len(tails)


def test_first_fetch_over_the_depth_cap_pays_a_one_row_count_then_rows(tmp_path, emulator):
    emulator.api.depth_cap = CAP
    emulator.set_profile("big.com", TOTAL)
    run_pipeline(tmp_path, emulator, ["big.com"], kind="full", settings_options={"page_size": SIZE}, depth_cap=CAP)
    row = ledger(tmp_path, "big.com")
    assert row["status"] == "complete" and set(loaded_domains(tmp_path, "big.com")) == truth(emulator, "big.com")
    leaves = leaves_of(row)
    assert sum(leaves) == TOTAL and row["partitions"] == len(leaves)
    assert len(leaves) == 40, "one split: 39 prefixes and the names none of them reaches"
    # a 1-row count of the root (its size was unknown: no page of 100 rows is thrown away), a
    # 1-row probe of each of the 40 partitions, the rows and their overlaps; the last leaf, the
    # names no prefix reaches, counts the whole result: no final count of its own
    expected = 1 + 40 + read_cost(row, cap=CAP)
    assert emulator.api.credits_charged == row["credits_spent"] == expected


def test_later_fetch_starts_from_the_ledgers_partitions(tmp_path, emulator):
    emulator.api.depth_cap = CAP
    emulator.set_profile("big.com", TOTAL)
    run_pipeline(tmp_path, emulator, ["big.com"], kind="full", settings_options={"page_size": SIZE}, depth_cap=CAP)
    first = ledger(tmp_path, "big.com")
    emulator.api.clear_log()
    later = emulator.today + dt.timedelta(days=7)
    run_pipeline(tmp_path, emulator, ["big.com"], later, kind="full", settings_options={"page_size": SIZE},
                 depth_cap=CAP)
    row = ledger(tmp_path, "big.com")
    assert row["status"] == "complete" and str(row["snapshot_date"]) == str(later)
    assert all(e.complex_filter or e.order == "desc" or e.size == 1 for e in ref_requests(emulator)[:-1]), \
        "no root page"
    # no root page; the probes the plan cannot spare; the rows and their overlaps (the final count
    # is the last leaf's, the names no prefix reaches)
    expected = from_the_plan(first, CAP) + read_cost(row, cap=CAP, from_plan=True)
    assert emulator.api.credits_charged == row["credits_spent"] == expected


def test_learned_depth_cap_is_the_offset_of_the_refused_page(tmp_path, emulator):
    """Serpstat's window (500) is narrower than configured (60,000): the first window starting
    past it is refused, and its offset is the cap from then on, so partitions are cut to fit it
    at once, not to the 1,200 rows of the result."""
    emulator.api.depth_cap = CAP
    emulator.set_profile("big.com", TOTAL)
    run_pipeline(tmp_path, emulator, ["big.com"], kind="full", settings_options={"page_size": SIZE},
                 max_workers=1)
    row = ledger(tmp_path, "big.com")
    assert row["status"] == "complete" and set(loaded_domains(tmp_path, "big.com")) == truth(emulator, "big.com")
    refused = [e for e in ref_requests(emulator) if e.outcome == "error:402"]
    served, refused_page = served_before(CAP, TOTAL)
    # windows queued behind the refused one may go out before the refusal is handled: refused, and free
    assert refused and refused[0].page == refused_page and all(e.charge == 0 for e in refused)
    assert {e.complex_filter is None for e in refused} == {True}, "the learned cap held for every partition"
    # the root's count (1,200 fits the configured 60,000), its windows read before the refusal,
    # then as a first pull over the cap
    expected = 1 + served + 40 + read_cost(row)
    assert emulator.api.credits_charged == row["credits_spent"] == expected


def test_a_partition_between_the_learned_and_a_guessed_window_is_split_unread(tmp_path, emulator):
    """As above, with 700 of the 1,200 names under `w`: over the real window (500), inside the
    (pages - 1) x size = 1,100 an older rule guessed from the refused page. Learned from the
    refused page's offset, `w` is split after its 1-row probe; with the guess, its pages 1-5
    were read and paid for, then refused again; with nothing learned, likewise."""
    emulator.api.depth_cap = CAP
    emulator.set_profile("www.com", 0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    names = ([f"w{letters[i % 26]}{i}.com" for i in range(700)]
             + [f"{letters[i % 22]}{i}.com" for i in range(500)])  # a-v: no other `w` name
    emulator.graph.add_named("www.com", names, emulator.today - dt.timedelta(days=30))
    run_pipeline(tmp_path, emulator, ["www.com"], kind="full", settings_options={"page_size": SIZE},
                 max_workers=1)
    row = ledger(tmp_path, "www.com")
    assert row["status"] == "complete" and set(loaded_domains(tmp_path, "www.com")) == set(names)
    refused = [e for e in ref_requests(emulator) if e.outcome == "error:402"]
    assert refused and {e.complex_filter is None for e in refused} == {True}, "only the root is refused"
    served, _ = served_before(CAP, 1200)
    # the root's count and its windows before the refusal; `w`'s 1-row probe; then each leaf's
    # probe or count, its rows and their overlaps
    expected = 1 + served + 1 + row["partitions"] + read_cost(row)
    assert emulator.api.credits_charged == row["credits_spent"] == expected


def test_unicode_donors_inside_one_overflowing_rank_are_reached(tmp_path, emulator):
    """120 donors all of domain_rank 7, a window of 50: ranks could not split it, prefixes a-z0-9-_.
    reach the ASCII names; the names starting with Cyrillic or CJK letters are the set's last rows
    by name, read in descending order. Before, such a snapshot could never complete."""
    from serpstat_refdomains.emulator import Profile

    emulator.api.depth_cap = 50
    emulator.graph.set_profile("onerank.com", Profile(size=120, rank=7))
    run_pipeline(tmp_path, emulator, ["onerank.com"], kind="full", settings_options={"page_size": 10},
                 depth_cap=50)
    row = ledger(tmp_path, "onerank.com")
    assert row["status"] == "complete", row["error"]
    loaded = set(loaded_domains(tmp_path, "onerank.com"))
    assert loaded == truth(emulator, "onerank.com") and len(loaded) == 120
    plan = json.loads(row["partition_plan"])
    [tail] = [leaf for leaf in plan if leaf.get("tail")]
    non_ascii = [n for n in emulator.graph.truth("onerank.com", emulator.today) if not n[0].isascii()]
    assert tail["total"] == len(non_ascii) > 0
    # the root's count, a 1-row probe of each of the 40 partitions, the rows and overlaps, one count
    expected = 1 + 40 + read_cost(row, 10, 50)
    assert emulator.api.credits_charged == row["credits_spent"] == expected
    # a week later it starts from the plan: no root page, no count but the tail's, no probe of a
    # prefix well inside the window, and every donor again
    emulator.api.clear_log()
    run_pipeline(tmp_path, emulator, ["onerank.com"], emulator.today + dt.timedelta(days=7), kind="full",
                 settings_options={"page_size": 10}, depth_cap=50)
    later = ledger(tmp_path, "onerank.com")
    assert later["status"] == "complete", later["error"]
    assert set(loaded_domains(tmp_path, "onerank.com", day=later["snapshot_date"])) == truth(emulator, "onerank.com")
    expected = from_the_plan(row, 50, 10) + read_cost(later, 10, 50, from_plan=True)
    assert emulator.api.credits_charged == later["credits_spent"] == expected


def test_a_61000_row_target_at_page_size_1000_costs_its_rows_from_the_second_pull_on(tmp_path, emulator):
    """The realistic case of the issue: 62,003 credits a week for 61,000 rows before."""
    emulator.set_profile("big61k.com", 61_000)
    run_pipeline(tmp_path, emulator, ["big61k.com"], kind="full")
    first = ledger(tmp_path, "big61k.com")
    leaves = leaves_of(first)
    assert first["status"] == "complete" and sum(leaves) == 61_000

    assert first["credits_spent"] == 1 + 40 + read_cost(first, 1000)
    emulator.api.clear_log()
    run_pipeline(tmp_path, emulator, ["big61k.com"], emulator.today + dt.timedelta(days=7), kind="full")
    row = ledger(tmp_path, "big61k.com")
    expected = from_the_plan(first, 60_000, 1000) + read_cost(row, 1000, from_plan=True)
    assert row["status"] == "complete" and emulator.api.credits_charged == row["credits_spent"] == expected
    assert expected - 61_000 <= 61_000 * 0.005


def _domain_filters(entry) -> list[str]:
    """The domain_from values of a request's complexFilter, one per OR'd group."""
    return [c["value"][0] for group in entry.complex_filter or [] for c in group if c.get("field") == "domain_from"]


def test_a_plans_empty_leaves_are_read_in_one_request(tmp_path, emulator):
    """Each empty leaf alone costs a request and a credit (Serpstat charges an empty answer): read
    from the plan, the leaves the previous pull found empty or small share requests, an OR of
    their filters, and a donor new in a leaf that was empty is read and kept in the plan."""
    emulator.api.depth_cap = CAP
    emulator.set_profile("big.com", TOTAL)
    run_pipeline(tmp_path, emulator, ["big.com"], kind="full", settings_options={"page_size": SIZE}, depth_cap=CAP)
    first = json.loads(ledger(tmp_path, "big.com")["partition_plan"])
    empty = [leaf["prefix"] for leaf in first if leaf["total"] == 0 and not leaf.get("tail")]
    assert len(empty) >= 5, "the case needs several empty leaves"
    later = emulator.today + dt.timedelta(days=7)
    named = [p for p in empty if p.isalnum()]
    arrivals = [f"{named[0]}arrived.com", f"{named[-1]}arrived.net"]
    emulator.api.graph.add_named("big.com", arrivals, emulator.today)
    emulator.api.clear_log()
    run_pipeline(tmp_path, emulator, ["big.com"], later, kind="full", settings_options={"page_size": SIZE},
                 depth_cap=CAP)
    row = ledger(tmp_path, "big.com")
    assert row["status"] == "complete", row["error"]
    loaded = set(loaded_domains(tmp_path, "big.com", day=later))
    assert loaded == truth(emulator, "big.com") and set(arrivals) <= loaded
    requests = ref_requests(emulator, "big.com")
    with_empty = [e for e in requests if set(empty) & set(_domain_filters(e))]
    assert all(len(_domain_filters(e)) > 1 for e in with_empty), "no leaf that was empty is read alone"
    assert len(with_empty) < len(empty) / 4
    plan = {leaf["prefix"]: leaf["total"] for leaf in json.loads(row["partition_plan"]) if not leaf.get("tail")}
    assert plan[named[0]] == plan[named[-1]] == 1 and sum(plan[p] for p in empty) == 2
    expected = from_the_plan(row, CAP) + read_cost(row, cap=CAP, from_plan=True)
    assert emulator.api.credits_charged == row["credits_spent"] == expected


def test_a_group_whose_names_no_member_takes_is_read_member_by_member(tmp_path, emulator, monkeypatch):
    """Serpstat's name matching is not documented beyond ignoring case: a collation that folds
    accents would answer `startsWith u` with `über.de`, a name our split counts as no prefix's.
    A group's rows are then not told apart: its members are read one by one, and the snapshot
    is never complete without a donor."""
    import unicodedata

    from serpstat_refdomains.emulator import api as emulator_api

    emulator.api.depth_cap = CAP
    emulator.set_profile("big.com", TOTAL)
    run_pipeline(tmp_path, emulator, ["big.com"], kind="full", settings_options={"page_size": SIZE}, depth_cap=CAP)
    plan = json.loads(ledger(tmp_path, "big.com")["partition_plan"])
    empty = [leaf["prefix"] for leaf in plan if not leaf.get("tail") and leaf["total"] == 0]
    accented = {"a": "á", "e": "é", "o": "ö", "u": "ü", "i": "í"}
    prefix = next(p for p in empty if p in accented)
    emulator.api.graph.add_named("big.com", [f"{accented[prefix]}folded.de"], emulator.today)
    compare = emulator_api._compare

    def folding(actual, how, values):
        if isinstance(actual, str) and how in ("startsWith", "eq"):
            actual = "".join(c for c in unicodedata.normalize("NFKD", actual) if not unicodedata.combining(c))
        return compare(actual, how, values)

    monkeypatch.setattr(emulator_api, "_compare", folding)
    emulator.api.clear_log()
    later = emulator.today + dt.timedelta(days=7)
    run_pipeline(tmp_path, emulator, ["big.com"], later, kind="full", settings_options={"page_size": SIZE},
                 depth_cap=CAP)
    row = ledger(tmp_path, "big.com")
    requests = ref_requests(emulator, "big.com")
    grouped_reads = [i for i, e in enumerate(requests) if prefix in _domain_filters(e) and len(_domain_filters(e)) > 1]
    alone = [i for i, e in enumerate(requests) if _domain_filters(e) == [prefix]]
    assert grouped_reads and alone and alone[0] > grouped_reads[0], "the group, then its member alone"
    assert requests[alone[0]].size == SIZE, "its size is known from the plan: no count first"
    if row["status"] == "complete":
        assert set(loaded_domains(tmp_path, "big.com", day=later)) == truth(emulator, "big.com")
    else:
        assert row["status"] == "incomplete"
