#!/bin/sh
# Docker secrets to environment variables, then run the command.
#
# Each file in $SAGA_SECRETS_DIR (default /run/secrets) whose name is a variable name (capitals,
# digits, underscores) becomes that variable, holding the file's content without its trailing
# newline: compose mounts `secrets: [{source: nats-orders-password, target: SAGA_NATS_PASSWORD}]`
# as /run/secrets/SAGA_NATS_PASSWORD, and the command reads SAGA_NATS_PASSWORD as usual. So the
# password is in no compose file, image layer or `docker inspect` output, and no option puts it
# in `ps`. Other files (lower-case names, certificates) are left for the command to read.
#
# POSIX sh: the project image (dash) and the nats image (busybox) both run it.
set -eu

dir="${SAGA_SECRETS_DIR:-/run/secrets}"
if [ -d "$dir" ]; then
    for path in "$dir"/*; do
        [ -f "$path" ] || continue
        name="${path##*/}"
        case "$name" in
            [!A-Z_]* | *[!A-Z0-9_]*) continue ;;
        esac
        # A variable already set in the environment is a configuration mistake: say which.
        if eval "[ -n \"\${$name+set}\" ]"; then
            echo "entrypoint: $name is set both in the environment and as a secret; keep one" >&2
            exit 64
        fi
        if ! value="$(cat "$path")"; then
            echo "entrypoint: cannot read the secret $path" >&2
            exit 66
        fi
        if [ -z "$value" ]; then
            echo "entrypoint: the secret $path is empty" >&2
            exit 65
        fi
        export "$name=$value"
    done
fi
exec "$@"
