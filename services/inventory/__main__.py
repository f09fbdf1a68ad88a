"""``python -m services.inventory --nats URL --db URL``: run one inventory replica."""

from services.common import service_command
from services.inventory.service import build, metadata, seed

main = service_command(
    "inventory", metadata, build, seed, help="Stock per SKU: reserve line items, release them."
)

if __name__ == "__main__":
    main()
