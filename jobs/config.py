"""Print the resolved config: every section with its defaults filled in, relative paths made absolute and secrets
redacted — exactly what the steps would run with. Nothing is started."""

import sys

from jobs._run import examples, job_parser, run


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("i2i config show", __doc__)
    parser.epilog = examples("i2i config show --config jobs/configs/quickstart.yaml --set train.epochs=2",
                             "i2i config show --config jobs/configs/unit_demo.yaml | jq .config.train")
    args = parser.parse_args(argv)

    def step() -> dict:
        from pipelines.config import load_config
        from pipelines.plan import resolved

        return {"config": resolved(load_config(args.config, args.overrides))}

    return run(step)


if __name__ == "__main__":
    sys.exit(main())
