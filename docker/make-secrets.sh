#!/bin/sh
# Make the Docker secrets that compose.yaml uses: random passwords and API tokens, one file
# each, in DIR (default: docker/secrets beside this script). Existing files are kept, so it is
# safe to run again; delete a file to rotate that secret (then recreate the containers that
# use it; PostgreSQL keeps the password it was initialised with, change it there with ALTER ROLE).
#
#   docker/make-secrets.sh [DIR]
#
# The directory is private to you (0700); the files are readable (0644) because compose
# bind-mounts them as they are, and the containers read them as their own unprivileged users.
set -eu

dir="${1:-$(dirname "$0")/secrets}"
umask 077
mkdir -p "$dir"
chmod 700 "$dir"

random() {
    # 32 random bytes as URL-safe text: no quoting trouble in URLs, configs or headers.
    head -c 32 /dev/urandom | base64 | tr -d '\n=' | tr '+/' '-_'
}

create() {
    name="$1"
    value="$2"
    if [ -s "$dir/$name" ]; then
        echo "kept    $dir/$name"
        return
    fi
    printf '%s\n' "$value" > "$dir/$name"
    chmod 644 "$dir/$name"
    echo "created $dir/$name"
}

create postgres-password "$(random)"
for user in coordinator orders payments inventory shipping; do
    create "nats-$user-password" "$(random)"
done
# NAME:SECRET, space-separated for more than one; `saga` CLI users give the SECRET part
# (SAGA_API_TOKEN). Add your own names to these files.
create api-operator-tokens "operator:$(random)"
create api-viewer-tokens "viewer:$(random)"
