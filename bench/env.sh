# Sourced by the bench scripts: the server settings they all run with.
# HS256 tokens, minted by `todo-api token` with the same secret.
BENCH_SECRET=bench-secret-0123456789abcdef0123456789
export BETTER_AUTH_SECRET=$BENCH_SECRET
# One user sends far more than a person would: no rate limit unless asked.
export RATE_LIMIT=${RATE_LIMIT:-off}

# BINARY: the build under test, or else this checkout's release build.
release_binary() {
    if [[ -z ${BINARY:-} ]]; then
        cargo build --release -q
        BINARY=target/release/todo-api
    fi
}

# $work: a scratch directory, removed on exit together with the server the
# script started, if its pid is in $server.
scratch_space() {
    work=$(mktemp -d)
    server=
    trap '[[ -n $server ]] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
}
