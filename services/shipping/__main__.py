"""``python -m services.shipping --nats URL --db URL [--flaky 0.3]``: run one shipping replica."""

import click

from services.common import service_command
from services.shipping.service import build, metadata, seed

FLAKY = click.option(
    "--flaky", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
    envvar="SHIPPING_FLAKY", show_envvar=True,
    help="Probability that an attempt fails transiently (the step is retried).",
)  # fmt: skip

main = service_command(
    "shipping",
    metadata,
    build,
    seed,
    help="Deliveries: schedule (retriable; fails transiently with probability --flaky).",
    extra=(FLAKY,),
)

if __name__ == "__main__":
    main()
