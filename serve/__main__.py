"""``python -m serve [-c CONFIG.yaml] [-s key=value ...] [--best-json PATH|'']``"""
from __future__ import annotations

import argparse

from labkit import procs
from labkit.config import LabConfig

from .listener import serve


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m serve", description=__doc__)
    p.add_argument("-c", "--config", help="LabConfig YAML file")
    p.add_argument("-s", "--set", action="append", metavar="KEY=VALUE",
                   help="override a LabConfig setting (repeatable), e.g. -s serve.port=8881")
    p.add_argument("--best-json", default=None,
                   help="best.json to serve (default: serve.best_json; '' to ignore it)")
    args = p.parse_args(argv)
    procs.watch_parent()  # started by the lab (a bench, a stage): end when it ends
    cfg = LabConfig.load(args.config, args.set or None)
    if args.best_json is not None:
        cfg = cfg.with_overrides({"serve.best_json": args.best_json})
    serve(cfg)


if __name__ == "__main__":
    main()
