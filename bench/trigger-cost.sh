#!/usr/bin/env bash
# What the change-log triggers (migration 0007) cost the writers of the source tables:
# the same writes timed with the triggers enabled and disabled, in a scratch database.
#   bash bench/trigger-cost.sh [N]      (N customers, default 1000000; Postgres as for npm run bench)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
ADMIN="${BENCH_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
DB=as_trigger_cost
psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
URL="${ADMIN%/*}/$DB"
DATABASE_URL="$URL" npx tsx src/cli/main.ts migrate >/dev/null
time_it() { # label, sql
  local ms
  ms=$(psql -qAt "$URL" -c '\timing on' -c "$2" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1)
  printf '%-58s %10.0f ms\n' "$1" "$ms"
}
for mode in disabled enabled; do
  if [ "$mode" = disabled ]; then
    psql -q "$URL" -c 'ALTER TABLE audience_sync.customers DISABLE TRIGGER USER' -c 'ALTER TABLE audience_sync.campaign_target_groups DISABLE TRIGGER USER'
  else
    for t in customers campaign_target_groups; do
      psql -q "$URL" -c "ALTER TABLE audience_sync.$t ENABLE ALWAYS TRIGGER log_insert, ENABLE ALWAYS TRIGGER log_update, ENABLE ALWAYS TRIGGER log_delete, ENABLE ALWAYS TRIGGER log_truncate"
    done
  fi
  psql -q "$URL" -c 'TRUNCATE audience_sync.customers, audience_sync.campaign_target_groups, audience_sync.source_changes' -c 'VACUUM audience_sync.source_changes'
  echo "triggers $mode:"
  time_it "  INSERT $N customers" "INSERT INTO audience_sync.customers SELECT 'C' || i, 'user' || i || '@example.com' FROM generate_series(1, $N) i"
  time_it "  INSERT $N target-group rows" "INSERT INTO audience_sync.campaign_target_groups SELECT 'k', 'C' || i FROM generate_series(1, $N) i"
  time_it "  upsert all $N customers, nothing changed" "INSERT INTO audience_sync.customers SELECT 'C' || i, 'user' || i || '@example.com' FROM generate_series(1, $N) i ON CONFLICT (customer_id) DO UPDATE SET email = excluded.email"
  time_it "  UPDATE 1 % of the emails" "UPDATE audience_sync.customers SET email = 'moved' || customer_id || '@example.org' WHERE customer_id IN (SELECT 'C' || i FROM generate_series(1, $N, 100) i)"
  time_it "  DELETE 1 % of the target-group rows" "DELETE FROM audience_sync.campaign_target_groups WHERE customer_id IN (SELECT 'C' || i FROM generate_series(2, $N, 100) i)"
done
psql -q "$ADMIN" -c "DROP DATABASE $DB"
