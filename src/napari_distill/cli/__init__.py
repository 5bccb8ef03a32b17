"""The ``napari-distill`` command line: the same core as the plugin, without a display.

Every subcommand has ``--help``. Progress records from the core's generators are drawn as tqdm
bars; a user mistake ends in one line on stderr (exit code 2), never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence

from napari_distill import __version__
from napari_distill.cli import (  # noqa: F401  (register their commands)
    distill,
    engine,
    export,
    predict,
    propagate,
    quality,
    teacher,
)
from napari_distill.cli._base import COMMANDS, UserError, add_threads_argument, threads_setting
from napari_distill.core.allocator import retained_freed_memory
from napari_distill.core.io import ReadWarning

log = logging.getLogger("napari_distill")


def _add_common(parser: argparse.ArgumentParser, *, device: bool = True) -> None:
    if device:
        parser.add_argument(
            "--device",
            default="auto",
            help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps",
        )
        parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        add_threads_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace output files that already exist"
    )


# The order a user meets the commands in: data, teacher, method 1, the whole run.
HELP_ORDER = (
    "sample",
    "train-teacher",
    "predict",
    "export-model",
    "evaluate",
    "propagate",
    "quality-fit",
    "quality-score",
    "distill",
    "run",
)


def _help_position(name: str) -> int:
    return HELP_ORDER.index(name) if name in HELP_ORDER else len(HELP_ORDER)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="napari-distill",
        description="Segment CT stacks and Pap smears from a few annotated slices.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in sorted(COMMANDS.items(), key=lambda item: _help_position(item[0])):
        p = sub.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(p)
        _add_common(p, device=command.uses_device)
        p.set_defaults(handler=command.run)
    return parser


def _warning_printer(command: str) -> Callable[..., None]:
    """``warnings.showwarning`` printing what napari-distill changed in a file as one line
    (Python's default adds the source file and line of the library code); others as usual."""
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, ReadWarning):
            sys.stderr.write(f"napari-distill {command}: warning: {message}\n")
        else:
            default(message, category, filename, lineno, file, line)

    return show


@contextlib.contextmanager
def _threads(args: argparse.Namespace) -> Iterator[None]:
    """``--threads`` for the command that computes (restored after: ``main`` may run inside
    a longer-lived process); commands without the option leave torch as it is."""
    if not hasattr(args, "threads"):
        yield
        return
    from napari_distill.core.device import cpu_threads

    with cpu_threads(threads_setting(args)) as count:
        log.info("torch uses %d CPU thread%s (--threads)", count, "" if count == 1 else "s")
        yield


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(message)s",
    )
    try:
        # Freed tensors' memory is kept for reuse (see core.allocator): faster on the CPU.
        with retained_freed_memory(), warnings.catch_warnings(), _threads(args):
            warnings.showwarning = _warning_printer(args.command)
            args.handler(args)
    except KeyboardInterrupt:
        sys.stderr.write("napari-distill: stopped by the user\n")
        return 130
    except (UserError, ValueError, OSError, FloatingPointError) as exc:  # a diverged run too
        # One line, as promised: some messages (torch's refusals) span several lines.
        message = " ".join(str(exc).split()) or exc.__class__.__name__
        sys.stderr.write(f"napari-distill {args.command}: error: {message}\n")
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
