"""The ``neuronaudit`` command: run the pipeline and check a config without remembering Snakemake flags.

    neuronaudit run                      # the offline default study (snakemake --profile profiles/default)
    neuronaudit run -n                   # what would run, and why
    neuronaudit run --configfile config/paper.yaml --config study=p1 --cores 8
    neuronaudit config config/tiny.yaml --config 'sampling={seeds: 3}'   # validate, print with defaults
    neuronaudit serve results/default/crowd --raters 5   # the local rating app (docs/crowd_app.md)
    neuronaudit export-ratings results/default/crowd     # its answers -> app_ratings.parquet

Anything ``run`` does not know is passed to Snakemake as it is.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import yaml

from neuronaudit.config import ConfigError, load_config
from neuronaudit.crowd.app import DURABILITY_DEFAULT as SERVE_DURABILITY
from neuronaudit.crowd.app import THREADS as SERVE_THREADS
from neuronaudit.crowd.app import serve
from neuronaudit.crowd.store import DURABILITY, AppSetupError, export_ratings


def find_workflow(start: str | os.PathLike | None = None) -> Path:
    """The folder holding the Snakefile: ``start`` or one of its parents, else this package's checkout."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "Snakefile").is_file() and (folder / "workflow").is_dir():
            return folder
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "Snakefile").is_file():
        return checkout
    raise SystemExit(
        "neuronaudit: no Snakefile found here or above, and the package is not installed from a checkout; "
        "cd into the neuronaudit checkout or pass --directory"
    )


def _parse_overrides(items: list[str]) -> dict:
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"neuronaudit: --config expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key] = yaml.safe_load(value) if value else None
    return out


def cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    work = find_workflow(args.directory)
    cmd = [sys.executable, "-m", "snakemake", "--profile", "profiles/default", "--cores", str(args.cores)]
    if args.configfile:
        cmd += ["--configfile", *args.configfile]
    if args.dry_run:
        cmd.append("-n")
    cmd += extra
    if args.config:  # last: --config takes every following word
        cmd += ["--config", *args.config]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"}
    print("+", " ".join(cmd), f"(in {work})", file=sys.stderr)
    return subprocess.call(cmd, cwd=work, env=env)


def cmd_config(args: argparse.Namespace, extra: list[str]) -> int:
    if extra:
        raise SystemExit(f"neuronaudit config: unexpected arguments {extra}")
    work = find_workflow(args.directory)
    files = args.files or [str(work / "config" / "config.yaml")]
    try:
        cfg = load_config(*files, overrides=_parse_overrides(args.config or []))
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 1
    yaml.safe_dump(cfg, sys.stdout, sort_keys=False)
    return 0


def cmd_serve(args: argparse.Namespace, extra: list[str]) -> int:
    if extra:
        raise SystemExit(f"neuronaudit serve: unexpected arguments {extra}")
    raters = args.rater if args.rater else args.raters
    app_cfg = {"threads": SERVE_THREADS, "durability": SERVE_DURABILITY}
    if args.configfile:  # the study config's crowd.app, validated with its defaults
        try:
            app_cfg = load_config(*args.configfile)["crowd"]["app"]
        except (ConfigError, OSError) as err:
            print(f"neuronaudit serve: {err}", file=sys.stderr)
            return 1
    threads = args.threads if args.threads is not None else app_cfg["threads"]
    durability = args.durability if args.durability is not None else app_cfg["durability"]
    try:
        return serve(args.crowd, host=args.host, port=args.port, raters=raters,
                     raters_per_task=args.raters_per_task, threads=threads, durability=durability,
                     run=not args.setup_only)
    except AppSetupError as err:
        print(f"neuronaudit serve: {err}", file=sys.stderr)
        return 1


def cmd_export_ratings(args: argparse.Namespace, extra: list[str]) -> int:
    if extra:
        raise SystemExit(f"neuronaudit export-ratings: unexpected arguments {extra}")
    try:
        path, n = export_ratings(args.crowd, args.out)
    except AppSetupError as err:
        print(f"neuronaudit export-ratings: {err}", file=sys.stderr)
        return 1
    print(f"{path}: {n} ratings")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neuronaudit",
        description="Generate and evaluate explanations of neurons in vision models (a Snakemake pipeline).",
        epilog="Every config key is documented in config/README.md.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a study through Snakemake (default: the offline default study)")
    run.add_argument("--cores", default="2", help="CPU cores for Snakemake (default 2)")
    run.add_argument("--configfile", nargs="+", help="study config file(s); replaces config/config.yaml")
    run.add_argument("--config", nargs="+", metavar="KEY=VALUE", help="override single keys")
    run.add_argument("-n", "--dry-run", action="store_true", help="show what would run, run nothing")
    run.add_argument("--directory", help="the neuronaudit checkout (default: found from here)")
    run.set_defaults(func=cmd_run)
    conf = sub.add_parser("config", help="validate a study config and print it with every default filled in")
    conf.add_argument("files", nargs="*", help="config file(s) (default: config/config.yaml)")
    conf.add_argument("--config", nargs="+", metavar="KEY=VALUE", help="override single keys")
    conf.add_argument("--directory", help="the neuronaudit checkout (default: found from here)")
    conf.set_defaults(func=cmd_config)
    srv = sub.add_parser("serve", help="the local rating app for a crowd folder (tasks.parquet + images/)",
                         description="Serve the rating tasks of CROWD (results/<study>/crowd) to your own raters: "
                         "prints one private link per rater and the owner's link. The answers live in "
                         "CROWD/app.sqlite; re-running reuses it (same links). See docs/crowd_app.md.")
    srv.add_argument("crowd", metavar="CROWD", help="the crowd folder holding tasks.parquet and images/")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    srv.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    who = srv.add_mutually_exclusive_group()
    who.add_argument("--raters", type=int, metavar="N", help="N raters named rater01... (new store: default 3)")
    who.add_argument("--rater", action="append", metavar="NAME", help="a named rater (repeat for each)")
    srv.add_argument("--raters-per-task", type=int, metavar="M",
                     help="raters per task (new store: default 3; at most the number of raters)")
    srv.add_argument("--threads", type=int, metavar="N",
                     help=f"server worker threads (default: crowd.app.threads, {SERVE_THREADS})")
    srv.add_argument("--durability", choices=sorted(DURABILITY),
                     help=f"process: an acknowledged answer survives kill -9 of the server (or its crash); power: "
                     f"also an OS crash or power loss, one disk flush per submission (default: "
                     f"crowd.app.durability, {SERVE_DURABILITY}; docs/crowd_app.md)")
    srv.add_argument("--configfile", nargs="+", metavar="FILE",
                     help="study config file(s) whose crowd.app section gives --threads and --durability")
    srv.add_argument("--setup-only", action="store_true", help="create the store, print the links, do not serve")
    srv.set_defaults(func=cmd_serve)
    exp = sub.add_parser("export-ratings", help="write the rating app's answers as a ratings Parquet")
    exp.add_argument("crowd", metavar="CROWD", help="the crowd folder the app served")
    exp.add_argument("--out", help="output Parquet (default CROWD/app_ratings.parquet)")
    exp.set_defaults(func=cmd_export_ratings)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    return args.func(args, extra)


if __name__ == "__main__":
    raise SystemExit(main())
