"""``ecmpi analyze FILES...``: print a summary table of logs, optionally plot them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .tables import FORMATS

__all__ = ["add_arguments", "check_outputs", "main"]


def _eps(v: str) -> float:
    try:
        e = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {v!r}") from None
    if not e > 0 or e == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {v!r}")
    return e


def _accuracy(v: str) -> float:
    from .common import check_accuracy

    try:
        return check_accuracy(float(v))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {v!r}") from None


def _x(v: str) -> list[str]:
    from .plots import parse_x

    try:
        return parse_x(v)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _plot_path(v: str) -> Path:
    from .plots import PLOT_FORMATS

    p = Path(v)
    if p.suffix.lower() not in PLOT_FORMATS:
        raise argparse.ArgumentTypeError(
            f"the plot file must end in {', '.join(PLOT_FORMATS)}, got {v!r}"
        )
    return p


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``ecmpi analyze`` options to ``parser``."""
    parser.add_argument("files", nargs="+", metavar="FILES", help="logs, directories or globs")
    parser.add_argument("--eps", type=_eps, help="suboptimality target f - f* <= EPS")
    parser.add_argument(
        "--accuracy",
        type=_accuracy,
        metavar="A",
        help="held-out accuracy target in (0, 1]: rounds, bits and time until the test "
        "accuracy stays >= A (mlp logs); the plot then shows accuracy",
    )
    parser.add_argument(
        "--group-by",
        metavar="KEY[,KEY]",
        help="aggregate over runs sharing these keys (e.g. algorithm,compressor): "
        "mean and spread across the rest (seeds)",
    )
    parser.add_argument(
        "--baseline",
        metavar="KEY=VALUE[,...]",
        help="the full-precision reference runs for the compression ratio "
        "(default: compressor none, DQ-GD/QGD excluded)",
    )
    parser.add_argument(
        "--x",
        type=_x,
        default=["rounds"],
        metavar="rounds|bits|time[,...]",
        help="x axis of the plot; several give several panels (default: rounds)",
    )
    parser.add_argument(
        "--y",
        choices=("suboptimality", "loss", "test_accuracy", "test_loss"),
        help="the plotted curve (default: test_accuracy with --accuracy, else suboptimality)",
    )
    parser.add_argument("--plot", type=_plot_path, metavar="OUT.png|pdf|svg", help="write a figure")
    parser.add_argument(
        "--spread",
        choices=("minmax", "std", "none"),
        default="minmax",
        help="band around a group's mean curve (default: minmax)",
    )
    parser.add_argument("--title", help="figure title")
    parser.add_argument("--format", choices=FORMATS, default="text", help="table format")
    parser.add_argument(
        "--out",
        metavar="FILE",
        help="write the table here instead of stdout (never an input, a log or a device)",
    )
    parser.add_argument(
        "--skip-bad", action="store_true", help="skip unreadable or foreign files with a warning"
    )


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse ``--out``/``--plot`` files that are inputs, HDF5 files or not regular files.

    Raises:
        UsageError: the reason (exit status 2).
    """
    from ..outputs import check_output
    from .loading import find_logs

    try:
        inputs = find_logs(args.files)
    except FileNotFoundError:  # reported by the loading that follows
        inputs = []
    for option, path in (("--out", args.out), ("--plot", args.plot)):
        if path:
            check_output(path, inputs=inputs, refuse_hdf5=True, option=option)


def main(args: argparse.Namespace) -> int:
    """Run ``ecmpi analyze``; returns 0, or 1 with a message on stderr for unusable input.

    Raises:
        UsageError: an output that would replace an input or a log (:func:`check_outputs`).
    """
    import warnings

    from ..log import SchemaError
    from .loading import load

    check_outputs(args)
    from .plots import plot
    from .tables import format_table, summary

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            df = load(args.files, on_error="warn" if args.skip_bad else "raise")
        for w in caught:
            print(f"ecmpi analyze: warning: {w.message}", file=sys.stderr)
        table = summary(
            df,
            eps=args.eps,
            group_by=args.group_by,
            baseline=args.baseline,
            accuracy=args.accuracy,
        )
        text = format_table(table, args.format)
        if args.plot is not None:
            plot(
                df,
                x=args.x,
                group_by=args.group_by,
                eps=args.eps,
                spread=args.spread,
                title=args.title,
                path=args.plot,
                y=args.y,
                accuracy=args.accuracy,
            )
        if args.out:
            Path(args.out).write_text(text)
        else:
            sys.stdout.write(text)
    except SchemaError as exc:
        print(f"ecmpi analyze: error: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError, TypeError) as exc:
        print(f"ecmpi analyze: error: {exc}", file=sys.stderr)
        return 1
    if args.plot is not None:
        print(f"ecmpi analyze: wrote {args.plot}", file=sys.stderr)
    return 0
