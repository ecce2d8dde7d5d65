# Sourced by the bench scripts: the server settings they all run with.
# HS256 tokens, minted by `todo-api token` with the same secret.
BENCH_SECRET=bench-secret-0123456789abcdef0123456789
export BETTER_AUTH_SECRET=$BENCH_SECRET
# One user sends far more than a person would: no rate limit unless asked.
export RATE_LIMIT=${RATE_LIMIT:-off}
