"""Registry operations on the ``i2i-*`` registered models: a table in a terminal, JSON with ``--json``.

    i2i models list [NAME]                      versions, aliases, the metric each was judged on
    i2i models best NAME [--metric M]           best version by eval.M under the champion's eval fingerprint
    i2i models best --dataset D [--metric M]    best across every family trained on D (one eval fingerprint)
    i2i models promote NAME VERSION [--force --reason TEXT]   through the gate, or forced
    i2i models rollback NAME [--reason TEXT]    champion back to the previous champion
    i2i models history NAME                     who was champion when, and why
"""

import argparse
import sys
from dataclasses import asdict

from jobs._run import examples, run
from pipelines import registry_ops as ops
from pipelines.config import add_config_args, load_config


EXAMPLES = {
    "list": ["i2i models list", "i2i models list i2i-pix2pix-edges2photo --json"],
    "best": ["i2i models best i2i-pix2pix-edges2photo --metric fid",
             "i2i models best --dataset edges2photo --metric fid --json   # across families"],
    "promote": ["i2i models promote i2i-pix2pix-edges2photo 3",
                "i2i models promote i2i-pix2pix-edges2photo 3 --force --reason 'hotfix for #12'"],
    "rollback": ["i2i models rollback i2i-pix2pix-edges2photo --reason 'v4 regressed'"],
    "history": ["i2i models history i2i-pix2pix-edges2photo"],
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="i2i models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=examples(*(e for ex in EXAMPLES.values() for e in ex)))
    sub = parser.add_subparsers(dest="cmd", required=True)
    cmds = {name: sub.add_parser(name, epilog=examples(*ex), formatter_class=argparse.RawDescriptionHelpFormatter)
            for name, ex in EXAMPLES.items()}
    for name, p in cmds.items():
        add_config_args(p)
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        p.add_argument("name", nargs="?" if name in ("list", "best") else None,
                       help="registered model, e.g. i2i-pix2pix-x")
    cmds["best"].add_argument("--metric", help="eval metric to rank by (default: promote.metric)")
    cmds["best"].add_argument("--dataset", help="instead of NAME: every model trained on this dataset, any family")
    cmds["best"].add_argument("--fingerprint", help="with --dataset: compare under this eval fingerprint (default: "
                              "the one most families were evaluated under)")
    cmds["best"].add_argument("--champions-only", action="store_true", help="with --dataset: champions only")
    cmds["promote"].add_argument("version")
    cmds["promote"].add_argument("--force", action="store_true", help="skip the gate (recorded as forced)")
    for name in ("promote", "rollback"):
        cmds[name].add_argument("--reason", help="why (recorded in the champion history)")
    return parser


def _step(args) -> dict:
    cfg = load_config(args.config, args.overrides)
    mlflow, alias = cfg.mlflow, cfg.promote.champion_alias
    if args.cmd == "list":
        return {"versions": [asdict(r) for r in ops.list_versions(mlflow, args.name)]}
    if args.cmd == "best" and args.dataset:
        return asdict(ops.best_across(mlflow, args.dataset, args.metric or cfg.promote.metric, alias,
                                      fingerprint=args.fingerprint, champions_only=args.champions_only))
    if args.cmd == "best":
        return asdict(ops.best_version(mlflow, args.name, args.metric or cfg.promote.metric, alias))
    if args.cmd == "promote" and args.force:
        reason = args.reason or "forced with i2i models promote --force"
        return asdict(ops.force_champion(mlflow, args.name, args.version, reason, alias))
    if args.cmd == "promote":
        return asdict(ops.promote_version(mlflow, args.name, args.version, cfg.promote, cfg.evaluate))
    if args.cmd == "rollback":
        return asdict(ops.rollback(mlflow, args.name, args.reason, alias))
    return asdict(ops.champion_history(mlflow, args.name, alias))


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.cmd == "best" and bool(args.name) == bool(args.dataset):
        parser.error("models best: give a registered model NAME or --dataset D (across families), one of the two")
    if args.cmd == "best" and not args.dataset and (args.fingerprint or args.champions_only):
        parser.error("models best: --fingerprint and --champions-only go with --dataset")
    return run(lambda: _step(args), text=not args.json)


if __name__ == "__main__":
    sys.exit(main())
