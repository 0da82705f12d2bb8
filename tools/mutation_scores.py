"""Per-module mutation scores from the last ``mutmut run`` (``make mutation``).

mutmut keeps each mutant's verdict (an exit code) in ``mutants/<source>.meta``; this reads them,
maps the codes with mutmut's own table, and prints one line per module:

    score = (killed + timeout) / (killed + timeout + survived + no tests)

Mutants listed in ``tests/mutation_equivalents.txt`` (``name  # why it is equivalent``) are left
out of the score and counted apart; mutants not checked yet (a run stopped early) are shown, never
counted either way. "No tests" counts against the score: no test covers that code at all.

    .venv/bin/python tools/mutation_scores.py [--goal 0.85] [--mutants DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

REPO = Path(__file__).resolve().parent.parent
EQUIVALENTS = REPO / "tests" / "mutation_equivalents.txt"


def equivalents(path: Path = EQUIVALENTS) -> dict[str, str]:
    """Mutant name -> the reason it cannot be killed (the file's ``#`` comment, required)."""
    found: dict[str, str] = {}
    if not path.exists():
        return found
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        name, sep, why = text.partition("#")
        if not sep or not why.strip():
            raise SystemExit(f"{path}:{n}: an equivalent mutant needs its reason after '#'")
        found[name.strip()] = why.strip()
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutants", type=Path, default=REPO / "mutants", help="mutmut's working folder")
    ap.add_argument("--goal", type=float, default=0.85, help="the score each module should reach")
    args = ap.parse_args(argv)
    metas = sorted(args.mutants.glob("src/**/*.py.meta"))
    if not metas:
        print(f"no mutmut results under {args.mutants}: run `make mutation` first", file=sys.stderr)
        return 2
    skip = equivalents()
    cols = ("killed", "timeout", "survived", "no tests", "equivalent", "not checked")
    print(f"{'module':48} {'mutants':>7} " + " ".join(f"{c:>11}" for c in cols) + f" {'score':>6}")
    below = 0
    for meta in metas:
        codes = json.loads(meta.read_text(encoding="utf-8")).get("exit_code_by_key", {})
        count: Counter[str] = Counter()
        for name, code in codes.items():
            count["equivalent" if name in skip else status_by_exit_code[code]] += 1
        caught = count["killed"] + count["timeout"]
        scored = caught + count["survived"] + count["no tests"]
        score = caught / scored if scored else float("nan")
        below += score < args.goal
        module = meta.relative_to(args.mutants / "src").with_suffix("").as_posix()
        print(
            f"{module:48} {len(codes):>7} "
            + " ".join(f"{count[c]:>11}" for c in cols)
            + f" {score:>6.1%}"
            + ("" if score >= args.goal else "  < goal")
        )
    print(f"goal: {args.goal:.0%} of the non-equivalent mutants killed in every module; {below} below it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
