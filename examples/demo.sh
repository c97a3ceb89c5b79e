#!/usr/bin/env bash
# The demo: record an agent run's events in the embedded store, query them, verify the chain.
# Runs in a scratch directory so it never touches your project's .orchestrail/.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
orch="$here/.venv/bin/orchestrail"
work=${ORCHESTRAIL_DEMO_DIR:-$(mktemp -d -t orchestrail-demo.XXXXXX)}
cd "$work"
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

say "orchestrail events append --file examples/events/sample-run.jsonl"
"$orch" events append --file "$here/examples/events/sample-run.jsonl"
say "orchestrail events append --file ...   # again: a retry of stored events is idempotent"
"$orch" events append --file "$here/examples/events/sample-run.jsonl"
say "orchestrail events streams"
"$orch" events streams
say "orchestrail events query --run demo-run-1 --type 'tool.*'"
"$orch" events query --run demo-run-1 --type 'tool.*'
say "orchestrail events query --actor agent:backend-implementer --type tool.denied --json"
"$orch" events query --actor agent:backend-implementer --type tool.denied --json
say "orchestrail verify"
"$orch" verify
cat <<MSG

The store is $work/.orchestrail/events.db (SQLite). Look next:
  cd $work && $orch events query --all        # every event, in commit order
  cd $work && $orch events tail --from-start  # follow it live (Ctrl-C to stop)
  sqlite3 $work/.orchestrail/events.db "UPDATE events SET data='{}' WHERE position=8"
      # (after dropping the append-only trigger) then: $orch verify  -> names the edited event
MSG
