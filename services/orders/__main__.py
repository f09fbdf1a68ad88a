"""``python -m services.orders --nats URL --db URL``: run one orders replica."""

from services.common import service_command
from services.orders.service import build, metadata, seed

main = service_command(
    "orders", metadata, build, seed, help="Orders: create (pending), approve, reject."
)

if __name__ == "__main__":
    main()
