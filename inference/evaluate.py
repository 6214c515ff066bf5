"""Evaluation commands on WFDB database folders with reference annotations.

    python -m inference.evaluate qrs    [--data DIR] [--records ...] [--json OUT]
    python -m inference.evaluate beats  [--data DIR] --records NAME...|ds1|ds2|all [--json OUT]
    python -m inference.evaluate rhythm [--data DIR] [--records ...] [--json OUT]
    (each also takes --annotator EXT and --lead NAME [NAME ...])

DIR is one database's folder; without ``--data`` it is ``mitdb/`` under ``$CARDIOSPIKE_DATA_DIR``
(else ../shared/data). Records in its subfolders are found too, named by their path
(``p01/106``); no RECORDS file is needed. The reference is the ``.atr`` files, or ``.EXT`` with
``--annotator EXT``. The lead is the first of ``--lead``'s names the record has (any case), else
MLII, else II, else the first channel (``rhythm`` scores VF/VFL on the first channel unless
``--lead`` is given or the first channel is not in a voltage unit); a lead not in a voltage unit
is refused. ``--annotator`` is the extension without its dot. ``qrs`` and ``beats`` score
against beat annotations: a record whose annotations hold only rhythm marks (vfdb) is left out
with a line saying so, and refused when named; ``rhythm`` scores those rhythm marks. Every
chosen record's header is checked first, and a corrupt one (unreadable, or a sampling rate that
is not a number, which wfdb would read as 250 Hz) stops the command naming the file: figures
over fewer records than asked would pass for the whole set.
Problems end the command with a one-line message and exit status 1.

Each subcommand lives in its own module under ``inference/evaluation/`` and exposes
``add_parser(subparsers)`` and ``run(args) -> int``; this module only dispatches. Every
command shows a progress bar, prints a markdown table and, with ``--json OUT``, writes the
JSON, the table (``OUT`` with ``.md``) and its pictures beside it.
"""

import argparse
import sys

from inference.evaluation import beats, qrs, rhythm

SUBCOMMANDS = {"qrs": qrs, "beats": beats, "rhythm": rhythm}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.evaluate", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="what", required=True)
    for module in SUBCOMMANDS.values():
        module.add_parser(sub)
    args = parser.parse_args(argv)
    return SUBCOMMANDS[args.what].run(args)


if __name__ == "__main__":
    sys.exit(main())
