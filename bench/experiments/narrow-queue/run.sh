#!/usr/bin/env bash
# The narrow queue table, measured in SQL alone before building it (docs/benchmarks.md,
# "A narrow queue table, measured and not built").
#
# Schema A is `deliveries` as it is: the queue's indexes (`due`, `lease`, the ordering key's, the
# feed's) on the one table that is also the log. Schema B keeps the log in `l_b` (its own
# indexes only: nothing a settle changes is indexed, so the settle can be a HOT update) and the
# pending deliveries in a narrow `q_b`, deleted when settled.
#
# Each pgbench transaction is one batch of the server's own statements: `ins_*` inserts 64
# deliveries handed straight to the dispatcher (leased); `e2e_*` (`ins_*` then `settle_*`, put
# together below) inserts and settles them; `bl_*` claims 256 due deliveries of a backlog of
# 300,000 and settles them. Run with one client against a scratch database; rates are batches
# per second (tps).
#
#   bash run.sh [postgres URL]     (default postgres://postgres@127.0.0.1:5432/postgres)
set -euo pipefail
cd "$(dirname "$0")"
url="${1:-postgres://postgres@127.0.0.1:5432/postgres}"
db=narrow_queue_experiment
psql -q "$url" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
scratch="${url%/*}/$db"
work=$(mktemp -d)
trap 'psql -q "$url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"; rm -rf "$work"' EXIT
for s in a b; do cat "ins_$s.sql" "settle_$s.sql" > "$work/e2e_$s.sql"; done
run() { # fillfactor of l_b, script, transactions, synchronous_commit, [backlog fill]
  sed "s/FF/$1/" schema.sql | psql -q "$scratch" 2>&1 | grep -v NOTICE || true
  if [ -n "${5:-}" ]; then psql -q "$scratch" -f "$5"; psql -q "$scratch" -c "VACUUM ANALYZE"; fi
  tps=$(PGOPTIONS="-c synchronous_commit=$4" pgbench -n -f "$2" -t "$3" "$scratch" 2>&1 \
    | awk '/^tps/ {print $3}')
  echo "$(basename "$2") fillfactor=$1 synchronous_commit=$4: $tps batches/s"
}
for sync in on off; do
  for round in 1 2; do
    run 100 "$work/e2e_a.sql" 2000 "$sync"; run 100 "$work/e2e_b.sql" 2000 "$sync"
    run 60 "$work/e2e_b.sql" 2000 "$sync"
    run 100 ins_a.sql 2000 "$sync"; run 100 ins_b.sql 2000 "$sync"
    run 100 bl_a.sql 1100 "$sync" fill_a.sql; run 100 bl_b.sql 1100 "$sync" fill_b.sql
    run 70 bl_b.sql 1100 "$sync" fill_b.sql
  done
done
