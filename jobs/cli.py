"""The `quarry` command: one subcommand per module in `jobs/`.

Every job module defines `CONFIG` (its pydantic config model), `SUMMARY` (one line for
`quarry --help`), `run(config) -> dict` and optionally `format_summary(dict) -> str` for
a human report (otherwise the summary is printed as JSON). A job with subcommands names the
config key they set in `SUBCOMMAND` (`quarry review stats` == `quarry review command=stats`).
This module parses `--config FILE` and dotted `key=value` overrides, validates them before any
work, writes nothing itself (object-store URIs under a job's `remote_keys()` go through a local
mirror: engine/staging.py), and turns `ConfigError`/`ModelError` into a one-line message and
exit code 2 (`Refused`, a job that decided no, into exit code 3; `Interrupted`, a job a rerun resumes, 4).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import pkgutil
import sys
from types import ModuleType

import jobs
from engine.config import ConfigError, load_config
from engine.errors import Interrupted, Refused
from engine.models import ModelError
from engine.staging import Staging

NOT_JOBS = {"cli"}


def job_names() -> list[str]:
    """Job module names in `jobs/`, sorted (the CLI's subcommands)."""
    return sorted(m.name for m in pkgutil.iter_modules(jobs.__path__) if m.name not in NOT_JOBS and not m.name.startswith("_"))


def job_parser(module: ModuleType, prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(module.__doc__ or "").strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Overrides are dotted keys, e.g. seed=3 videos.n_workzone=20. Unknown keys are errors.",
    )
    parser.add_argument("--config", help="YAML config file (defaults are built in)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and the final summary")
    return parser


def run_job(module: ModuleType, argv: list[str] | None = None, prog: str | None = None) -> int:
    """Parse arguments for `module`, run it, print its summary as JSON; return an exit code."""
    spec = getattr(module, "__spec__", None)  # `python -m jobs.mine` runs the module as __main__
    name = (spec.name if spec else module.__name__).rsplit(".", 1)[-1]
    # options and key=value overrides in any order: `quarry mine -q decode.stride=4` too
    args = job_parser(module, prog or f"quarry {name}").parse_intermixed_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.quiet:  # Ultralytics logs and draws progress bars through its own channels
        os.environ["YOLO_VERBOSE"] = "False"
        logging.getLogger("ultralytics").setLevel(logging.WARNING)
    overrides = list(args.overrides)
    subcommand = getattr(module, "SUBCOMMAND", None)
    if subcommand and overrides and "=" not in overrides[0]:  # `quarry review stats ...`
        overrides[0] = f"{subcommand}={overrides[0]}"
    try:
        staging = Staging(getattr(module, "remote_keys", None))
        config = load_config(module.CONFIG, args.config, overrides, prepare=staging.localise)
        if args.print_config:
            print(json.dumps(staging.as_given(config.model_dump(mode="json")), indent=2))
            return 0
        with staging:
            summary = module.run(config)
    except (ConfigError, ModelError) as exc:
        print(f"quarry {name}: {exc}", file=sys.stderr)
        return 2
    except (Refused, Interrupted) as exc:
        print(f"quarry {name}: {exc}", file=sys.stderr)
        return exc.exit_code
    formatter = getattr(module, "format_summary", None)
    print(formatter(summary) if formatter else json.dumps(summary, indent=2, default=str))
    for line in staging.stored():
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    names = job_names()
    if not argv or argv[0] in ("-h", "--help"):
        lines = ["usage: quarry <job> [--config FILE] [key=value ...]", "", "jobs:"]
        for name in names:
            summary = getattr(importlib.import_module(f"jobs.{name}"), "SUMMARY", "")
            lines.append(f"  {name:<10} {summary}")
        lines += ["", "Run `quarry <job> --help` for a job's options."]
        print("\n".join(lines))
        return 0 if argv else 2
    name = argv[0]
    if name not in names:
        print(f"quarry: unknown job {name!r}; jobs are: {', '.join(names)}", file=sys.stderr)
        return 2
    return run_job(importlib.import_module(f"jobs.{name}"), argv[1:])


if __name__ == "__main__":
    sys.exit(main())
