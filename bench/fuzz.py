#!/usr/bin/env python
"""Issue 17's API fuzzing: schemathesis cases by the ten thousand over every /api/v1 operation.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/fuzz.py [--cases 10000]
    .venv/bin/python bench/fuzz.py --cases 500      # no DATABASE_URL: a SQLite file of its own

With DATABASE_URL it creates (and finally drops) the database `tally_bench_fuzz` on that server;
without, a temporary SQLite file. It runs the cases of tests/metering/test_openapi_fuzz.py
in-process (WSGI, no network): positive and negative schemathesis data, as each of its callers,
every response checked against the schema, the rows stored against what ingest reported
accepted (none for a refused request), and each ingest that stored items resent, which must
store nothing more. The cases are split evenly between the operations.

It prints per operation the cases run, the statuses seen, the resends and the failures, then
the first failures of each operation with the request that caused them; it exits 1 on any.
"""

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dataset import recreate_database, with_database  # noqa: E402  (bench/ is the script's folder)

BENCH_DB = "tally_bench_fuzz"
SHOWN_FAILURES = 3


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000, help="cases in all, split between the operations")
    parser.add_argument("--seed", type=int, help="hypothesis seed (default: random)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    return parser.parse_args()


def fuzz_operation(operation, callers: dict, cases: int, seed: int | None) -> dict:
    """Run `cases` cases of `operation`; what they showed. Failures are collected, not raised, so
    one bug does not end the run (and hypothesis does not spend the budget shrinking it)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as use_seed
    from hypothesis import strategies as st
    from schemathesis import GenerationMode

    from tests.metering.test_openapi_fuzz import call_and_check

    stats = {"cases": 0, "statuses": Counter(), "resent": 0, "failures": []}
    modes = st.one_of(operation.as_strategy(generation_mode=mode) for mode in GenerationMode)

    @given(case=modes, caller=st.sampled_from(sorted(callers)))
    @settings(
        max_examples=cases,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case, caller):
        stats["cases"] += 1
        try:
            outcome = call_and_check(case, callers[caller])
        except Exception as exc:  # a failed check, or anything else the case brought about
            stats["statuses"]["failed"] += 1
            stats["failures"].append((caller, case, exc))
            return
        stats["statuses"][outcome.status] += 1
        stats["resent"] += outcome.resend_status is not None

    if seed is not None:
        run = use_seed(seed)(run)
    run()
    return stats


def failure_text(caller: str, case, exc: Exception) -> str:
    message = str(exc).strip() or type(exc).__name__
    try:
        request = case.as_curl_command(headers={"Authorization": f"<{caller}>"})
    except Exception:  # a case so broken that it cannot be written as curl
        request = repr(case)
    return f"  as {caller}: {message[:2000]}\n    {request[:2000]}"


def main():
    args = parse_args()
    base_url = os.environ.get("DATABASE_URL", "")
    on_postgres = base_url.startswith(("postgres://", "postgresql://"))
    if on_postgres:
        recreate_database(base_url, BENCH_DB)
        os.environ["DATABASE_URL"] = with_database(base_url, BENCH_DB)
    else:
        folder = tempfile.TemporaryDirectory(prefix="tally-fuzz-")
        os.environ["DATABASE_URL"] = f"sqlite:///{folder.name}/fuzz.sqlite3"
    os.environ["API_RATE_LIMIT_PER_MINUTE"] = "0"  # thousands of cases a minute: a 429 would hide the rest
    os.environ.setdefault("LOG_LEVEL", "ERROR")  # every refused request logs a warning
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "usage_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    try:
        call_command("migrate", verbosity=0)
        from accounts.models import Organization
        from tests.metering.test_openapi_fuzz import CALLERS, ORG, OTHER_ORG, caller_headers, schema, stored_rows

        org = Organization.objects.create(name="Acme", slug=ORG, timezone="Europe/Berlin")
        other_org = Organization.objects.create(name="Globex", slug=OTHER_ORG, timezone="America/New_York")
        callers = caller_headers(org, other_org)
        operations = [result.ok() for result in schema.get_all_operations()]
        share, extra = divmod(args.cases, len(operations))
        database = "PostgreSQL" if on_postgres else "SQLite"
        print(f"{args.cases:,} cases over {len(operations)} operations on {database}, as {len(CALLERS)} callers\n")
        header = f"{'operation':52} {'cases':>6} {'resent':>6} {'failed':>6} {'time':>7}  statuses"
        print(header)
        print("-" * len(header))
        results, started = [], time.perf_counter()
        for index, operation in enumerate(operations):
            began = time.perf_counter()
            stats = fuzz_operation(operation, callers, share + (index < extra), args.seed)
            results.append((operation, stats))
            statuses = " ".join(f"{status}x{n}" for status, n in sorted(stats["statuses"].items(), key=str))
            print(
                f"{operation.label:52} {stats['cases']:6,} {stats['resent']:6,} {len(stats['failures']):6,} "
                f"{time.perf_counter() - began:6.0f}s  {statuses}",
                flush=True,
            )
        total = sum(stats["cases"] for _, stats in results)
        failures = sum(len(stats["failures"]) for _, stats in results)
        print("-" * len(header))
        print(
            f"{'all':52} {total:6,} {sum(s['resent'] for _, s in results):6,} {failures:6,} "
            f"{time.perf_counter() - started:6.0f}s  ({stored_rows():,} items stored in all)"
        )
        for operation, stats in results:
            if stats["failures"]:
                print(f"\n{operation.label}: {len(stats['failures'])} failures; the first {SHOWN_FAILURES}:")
                for failure in stats["failures"][:SHOWN_FAILURES]:
                    print(failure_text(*failure))
        ok = failures == 0 and total >= args.cases
        print(
            f"\n0 server errors, 0 schema violations, 0 items stored by a refused request: {'met' if ok else 'MISSED'}"
        )
    finally:
        from django.db import connections

        connections.close_all()
        if on_postgres and not args.keep:
            recreate_database(base_url, BENCH_DB, drop_only=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
