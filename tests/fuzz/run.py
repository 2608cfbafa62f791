"""Run the fuzz profile: ``python -m tests.fuzz.run --examples 10000 [--seed S]``.

Prints the seed first, then one line per finding and a summary; each input is written to
``--log`` (flushed) before it runs, so a process crash names the input that caused it.
Exit status: 0 if no promise was broken, 1 otherwise.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from tests.fuzz.grammar import inputs
from tests.fuzz.harness import DEFAULT_LIMIT, Finding, build, run


def fuzz(
    examples: int,
    seed: int,
    *,
    limit: float = DEFAULT_LIMIT,
    log: str | None = None,
    reset_every: int = 400,
    out: object = sys.stdout,
) -> tuple[int, list[Finding]]:
    """Run ``examples`` inputs drawn with ``seed``; (inputs run, findings)."""
    findings: list[Finding] = []
    count = 0
    with tempfile.TemporaryDirectory() as folder:
        state: dict = {"db": None, "files": None, "cache": {}}
        log_file = open(log, "w", encoding="utf-8") if log else None  # noqa: SIM115

        @settings(
            max_examples=examples,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis_seed(seed)
        @given(inputs())
        def one(text: str) -> None:
            nonlocal count
            if count % reset_every == 0 or state["db"] is None:
                if state["db"] is not None:
                    state["db"].close()
                state["db"], state["files"] = build(folder)
                state["cache"] = {}
            count += 1
            if log_file:
                log_file.write(f"{count}\t{text!r}\n")
                log_file.flush()
            try:
                finding = run(state["db"], state["files"], text, limit, state["cache"])
            except Exception as exc:  # the harness itself failed: report, start afresh
                finding = Finding("harness", text, f"{type(exc).__name__}: {exc}"[:500])
                state["db"].close()
                state["db"] = None
            if finding is not None:
                findings.append(finding)
                print(finding, file=out, flush=True)

        try:
            one()
        finally:
            if state["db"] is not None:
                state["db"].close()
            if log_file:
                log_file.close()
    return count, findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--limit", type=float, default=DEFAULT_LIMIT)
    parser.add_argument("--log", default=None)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"fuzz seed {seed}, {args.examples} inputs, limit {args.limit} s", flush=True)
    started = time.monotonic()
    count, findings = fuzz(args.examples, seed, limit=args.limit, log=args.log)
    kinds: dict[str, int] = {}
    for f in findings:
        kinds[f.kind] = kinds.get(f.kind, 0) + 1
    print(
        f"ran {count} inputs in {time.monotonic() - started:.0f} s with seed {seed}: "
        f"{len(findings)} findings {kinds}",
        flush=True,
    )
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
