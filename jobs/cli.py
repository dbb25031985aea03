"""``i2i`` console script: subcommands mirror the jobs (``i2i shard`` = ``python -m jobs.shard``)."""

import sys

from jobs import data_demo, evaluate, models, nightly, promote, register, schedule, shard, train, translate, tune

COMMANDS = {
    ("data", "demo"): data_demo.main, ("shard",): shard.main, ("train",): train.main, ("evaluate",): evaluate.main,
    ("register",): register.main, ("promote",): promote.main, ("nightly",): nightly.main,
    ("translate",): translate.main, ("tune",): tune.main, ("models",): models.main,
    ("schedule", "print"): schedule.main,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for words, fn in sorted(COMMANDS.items(), key=lambda kv: -len(kv[0])):
        if tuple(argv[: len(words)]) == words:
            return fn(argv[len(words):])
    names = ", ".join("i2i " + " ".join(w) for w in COMMANDS)
    print(f"usage: i2i COMMAND [options]\ncommands: {names}\n(each takes --help)", file=sys.stderr)
    return 0 if argv[:1] in (["-h"], ["--help"]) else 2


if __name__ == "__main__":
    sys.exit(main())
