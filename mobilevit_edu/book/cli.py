"""Check, run, re-draw and render the book's chapters from the command line (the book's tooling).

Run from anywhere inside the repository (chapter 00 and the Makefile use it)::

    python -m mobilevit_edu.book check
    python -m mobilevit_edu.book run [--profile ci|full] [--write] [--timeout-scale X] [CHAPTER ...]
    python -m mobilevit_edu.book figures [--profile ci|full] [--out DIR] [CHAPTER ...]
    python -m mobilevit_edu.book html [--out DIR]

Exit status: 0 when all is well, 1 when the book has problems or a chapter fails, 2 for a
mistake in the command (an unknown chapter or profile, no ``book.toml`` found, a bad option),
answered with one line on stderr that names the problem, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from mobilevit_edu.book.figures import regenerate_figures
from mobilevit_edu.book.manifest import BookError, check_book, load_book
from mobilevit_edu.book.profile import DEFAULT_PROFILE, PROFILE_ENV, PROFILES, profile_name
from mobilevit_edu.book.runner import format_summary, run_chapters
from mobilevit_edu.book.site import build_html

__all__ = ["UsageError", "build_parser", "main"]

#: The exit status for a mistake in the command.
USAGE_STATUS = 2


class UsageError(Exception):
    """A mistake in the command line (argparse's complaint, as one line)."""


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises :class:`UsageError` instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see: {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m mobilevit_edu.book`` argument parser."""
    p = _Parser(prog="python -m mobilevit_edu.book", description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=None, help="repository root (default: found from cwd)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="check that book.toml and chapters/ agree")
    r = sub.add_parser("run", help="execute chapters under a profile")
    r.add_argument("--profile", choices=PROFILES, default=None,
                   help=f"default: ${PROFILE_ENV}, else {DEFAULT_PROFILE}")
    r.add_argument("--write", action="store_true", help="also store outputs back into chapters/")
    r.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every budget (slow machines)")
    r.add_argument("chapters", nargs="*", metavar="CHAPTER", help="number, slug or path (default: all)")
    f = sub.add_parser("figures", help="regenerate every figure in figures/ by re-running the chapters")
    f.add_argument("--profile", choices=PROFILES, default="full", help="default: full (the committed figures)")
    f.add_argument("--out", type=Path, default=None, help="figure folder (default: figures/)")
    f.add_argument("chapters", nargs="*", metavar="CHAPTER", help="number, slug or path (default: all)")
    h = sub.add_parser("html", help="render the HTML book into _build/html")
    h.add_argument("--out", type=Path, default=None, help="output directory (default: _build/html)")
    return p


def _run(args: argparse.Namespace) -> int:
    book = load_book(args.root)
    if args.command == "check":
        problems = check_book(book)
        for line in problems:
            print(line)
        print(f"{len(problems)} problem(s)" if problems else f"OK: {len(book.chapters)} chapters")
        return 1 if problems else 0
    selection = [book.find(key).path for key in getattr(args, "chapters", [])]  # unknown: BookError
    if args.command == "run":
        profile = profile_name(args.profile)
        if args.timeout_scale <= 0:
            raise BookError(f"--timeout-scale must be positive, got {args.timeout_scale}")
        results = run_chapters(book, selection, profile=profile, write=args.write,
                               timeout_scale=args.timeout_scale)
        print(format_summary(results, profile))
        return 0 if all(r.ok for r in results) else 1
    if args.command == "figures":
        report = regenerate_figures(book, selection, profile=args.profile, figures=args.out)
        print(format_summary(report.runs, args.profile))
        print(report.summary())
        return 0 if report.ok else 1
    print(build_html(book, args.out))  # "html"
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (see the module docstring)."""
    try:
        return _run(build_parser().parse_args(argv))
    except (UsageError, BookError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_STATUS
