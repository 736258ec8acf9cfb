#!/bin/sh
# Like the official redis image: reachable from the other containers (no protected mode).
if [ "$1" = "redis-server" ]; then shift; exec redis-server --protected-mode no --bind 0.0.0.0 "$@"; fi
exec "$@"
