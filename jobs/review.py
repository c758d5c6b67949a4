"""Review mined candidates (seed 000's tools as subcommands over a candidates manifest):

    quarry review stats      [candidates=runs/mine/candidates.parquet]
    quarry review sample     sample_n=10 select.score_column=yolo_score
    quarry review export     select.band_low=0.6 select.band_high=0.8 export_dir=runs/export export_mode=copy
    quarry review categorise                       # one at a time in the terminal, resumable
    quarry review categorise categorise.method=clip categorise.clip.checkpoint=runs/base/clip.pt
    quarry review accept     select.categories=[orange_trucks]
    quarry review reject     select.ids=[lookalike_0003_f12]
    quarry review sheet                            # static HTML contact sheet

Answers go to an append-only reviews table (reviews.jsonl beside the manifest) at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from engine.review.commands import decide, export, load_candidates, sample, select, stats
from engine.review.config import ReviewConfig

CONFIG = ReviewConfig
SUMMARY = "review candidates: stats, sample, export, categorise, accept/reject, HTML sheet"
SUBCOMMAND = "command"  # `quarry review stats` == `quarry review command=stats`


def remote_keys(data: dict) -> tuple[list[str], list[str]]:
    """Object-store keys (engine/staging.py): the manifest brings its folder (snapshots, answers);
    the answers, an export and the sheet go back to the store. A command that writes beside the
    manifest (answers in reviews.jsonl, sheet/ by default) makes its folder an output too."""
    command = data.get("command", "stats")
    beside = (command in ("categorise", "accept", "reject") and not data.get("reviews")
              or command == "sheet" and not data.get("sheet_dir"))
    return (["candidates", "categorise.clip.checkpoint"],
            ["reviews", "export_dir", "sheet_dir", *(["candidates"] if beside else [])])


def run(config: ReviewConfig) -> dict:
    from engine.review import categorise

    table = select(load_candidates(config), config.select, list(config.categories))
    command = config.command
    if command == "stats":
        return {"command": command, **stats(table)}
    if command == "sample":
        return {"command": command, **sample(table, config.select.score_column, config.sample_n)}
    if command == "export":
        return {"command": command, **export(table, config.export_dir, config.export_mode)}
    if command in ("accept", "reject"):
        return {"command": command, **decide(table, f"{command}ed", config.reviews_path)}
    if command == "sheet":
        from engine.review.sheet import write_sheet

        out = config.sheet_dir or Path(config.candidates).parent / "sheet"
        return {"command": command, **write_sheet(table, out, list(config.categories), config.sheet_page_size,
                                                  config.thumb_px)}
    method = config.categorise.method
    if method == "interactive":
        result = categorise.interactive(table, list(config.categories), config.reviews_path)
    elif method == "clip":
        result = categorise.by_clip(table, config)
    else:
        result = categorise.by_rules(table, config)
    return {"command": command, "method": method, "reviews": str(config.reviews_path), **result}


def format_summary(summary: dict) -> str:
    return json.dumps(summary, indent=2, default=str)


def main(argv: list[str] | None = None) -> int:
    from jobs.cli import run_job

    return run_job(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
