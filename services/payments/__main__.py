"""``python -m services.payments --nats URL --db URL``: run one payments replica."""

from services.common import service_command
from services.payments.service import build, metadata, seed

main = service_command(
    "payments", metadata, build, seed, help="Customer credit: reserve, release, capture."
)

if __name__ == "__main__":
    main()
