"""`googlenet report RUN_DIR [-o FILE.html]`: one self-contained HTML page for a run folder.

Works on training, ensemble, evaluation (`--table3`), ablation and detection run folders; see
`googlenet.report.build` for what each shows. Every plot and image is embedded (base64 PNG), so the
single file is the whole report.
"""

from __future__ import annotations

import argparse

from googlenet.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    """`googlenet report`'s flags."""
    parser = subparsers.add_parser(
        "report",
        help="one self-contained HTML report of a training, evaluation, ablation or detection run folder",
        description=(
            "Write a single HTML file (plots and images embedded) with the run's configuration, curves, Table 1 "
            "summary, Table 3 breakdown, confusion matrix, most confidently wrong images with their top-5, "
            "gradient-flow plots, ablation tables and detections drawn on images, whichever apply."
        ),
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder")
    parser.add_argument(
        "-o", "--output", metavar="FILE.html", help="where to write (default RUN_DIR/report.html)"
    )
    parser.add_argument("--limit", type=int, default=500, metavar="N",
                        help="validation images run through the model for the confusion matrix (default 500)")  # fmt: skip
    parser.add_argument("--no-predictions", dest="predictions", action="store_false",
                        help="skip running the model (no confusion matrix or mistakes)")  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run `googlenet report` from parsed flags: write the HTML page and print its path; the exit code."""
    from googlenet.console import setup_console
    from googlenet.report.build import write_report

    setup_console()  # e.g. the line saying the built-in data is being drawn (it can take a minute)
    if args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {args.limit}")
    if args.output is not None and not args.output.lower().endswith((".html", ".htm")):
        raise ConfigError(f"--output {args.output}: the report is one HTML page; give a .html file name")
    path = write_report(args.run_dir, args.output, args.limit, args.predictions)
    print(path)
    return 0
