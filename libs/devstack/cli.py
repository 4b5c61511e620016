"""`make up`: write the stack's supervisord config and run supervisord in the foreground."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from libs.devstack.stack import Stack, write_config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="opsline-dev", description=__doc__)
    parser.add_argument("command", choices=["up", "config"])
    parser.add_argument(
        "--home",
        default=os.environ.get("OPSLINE_HOME", ".opsline"),
        help="state folder (default .opsline)",
    )
    parser.add_argument(
        "--port-offset",
        type=int,
        default=int(os.environ.get("OPSLINE_PORT_OFFSET", "0")),
        help="add this to every default port",
    )
    parser.add_argument(
        "--logs-to-files",
        action="store_true",
        help="write each program's output to HOME/logs/NAME.log",
    )
    args = parser.parse_args(argv)
    stack = Stack(
        home=Path(args.home), port_offset=args.port_offset, console=not args.logs_to_files
    )
    stack.home.mkdir(parents=True, exist_ok=True)
    os.chmod(stack.home, 0o700)
    config = write_config(stack)
    if args.command == "config":
        print(config)
        return
    print(f"opsline: starting the embedded stack (config {config}); Ctrl-C stops it", flush=True)
    supervisord = Path(sys.executable).parent / "supervisord"
    os.execv(str(supervisord), [str(supervisord), "-c", str(config)])


if __name__ == "__main__":
    main()
