"""`python -m bench.nab [--detector NAME] [--files N] [--param key=value]`: NAB on our detectors."""

from __future__ import annotations

import argparse
import json
import sys

from bench.nab import run as nab
from services.aiops_detector import detectors


def _param(text: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return key, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected key=number, got {text!r}") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.nab")
    parser.add_argument("--detector", action="append", choices=detectors.names())
    parser.add_argument("--files", type=int, help="score only N files spread over the corpus")
    parser.add_argument("--param", type=_param, action="append", default=[])
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--json", action="store_true", help="print the raw figures too")
    args = parser.parse_args(argv)
    if args.files is not None and args.files < 1:
        parser.error("--files must be at least 1")
    names = args.detector or detectors.names()
    if args.param and len(names) != 1:
        parser.error("--param needs exactly one --detector")
    results = []
    for name in names:
        print(f"bench/nab: {name}", file=sys.stderr, flush=True)
        try:
            results.append(
                nab.run(name=name, params=dict(args.param), files=args.files, jobs=args.jobs)
            )
        except ValueError as exc:
            parser.error(str(exc))
    if args.json:
        print(json.dumps(results, indent=2))
    print(nab.table(results))


if __name__ == "__main__":
    main()
