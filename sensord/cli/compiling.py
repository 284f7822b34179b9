"""``sensord compile``: the detector's machine code into numba's disk cache, at install."""

from __future__ import annotations

import argparse
import os

from sensord.cli.arguments import SubParsers


def add_command(commands: SubParsers) -> None:
    p = commands.add_parser(
        "compile",
        help="compile the detector's machine code now (run at install; starts then load it)",
        description=(
            "Compile the compiled path's kernels (numba) into its disk cache, so that the "
            "daemon's first start does not spend tens of seconds compiling before it is "
            "ready. The cache is NUMBA_CACHE_DIR when set (the systemd unit sets it), else "
            "beside the installed package. Run it as the user the daemon runs as."
        ),
    )
    p.set_defaults(command=_compile)


def _compile(args: argparse.Namespace) -> int:
    from sensord.core.compiled.warmup import compile_kernels

    seconds = compile_kernels()
    where = os.environ.get("NUMBA_CACHE_DIR") or "beside the package (sensord/core/compiled)"
    print(f"compiled path ready in {seconds:.1f} s; cache: {where}")
    return 0
