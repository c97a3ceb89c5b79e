#!/usr/bin/env bash
# The demo (no API key needed): a subagent defined in Claude Code's format works a task in a
# scratch git repository, driven by scripted model turns; every action lands in the embedded
# SQLite trail, which we then query and verify. Runs in a scratch directory.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
orch="$here/.venv/bin/orchestrail"
work=${ORCHESTRAIL_DEMO_DIR:-$(mktemp -d -t orchestrail-demo.XXXXXX)}
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

# A scratch project: the example app under git, with the example subagents.
mkdir -p "$work/.claude/agents" && cd "$work"
cp "$here/examples/health-app/app.py" .
cp "$here/examples/agents/backend-implementer.md" "$here/.claude/agents/reviewer.md" .claude/agents/
printf '__pycache__/\n' > .gitignore
git init -q . && git add -A && git -c user.name=demo -c user.email=demo@example.com commit -qm init

say "orchestrail init   # orchestrail.yaml (store: SQLite at .orchestrail/events.db), .gitignore entry"
"$orch" init

say "orchestrail agents list"
"$orch" agents list
say "orchestrail task import story-4.2-event-store-backend-selection.md --agent backend-implementer"
"$orch" task import "$here/examples/stories/story-4.2-event-store-backend-selection.md" \
    --agent backend-implementer
say "orchestrail task ready"
"$orch" task ready
say "orchestrail agents run backend-implementer \"Add a /health endpoint and its test\" --provider script --script health-endpoint.yaml"
"$orch" agents run backend-implementer "Add a /health endpoint and its test" \
    --provider script --script "$here/examples/scripts/health-endpoint.yaml" --run-id demo-run
say "git status --short   # what the agent changed"
git status --short
say "orchestrail events query --run demo-run --type 'tool.*'"
"$orch" events query --run demo-run --type 'tool.*' --limit 50
say "orchestrail runs"
"$orch" runs
say "orchestrail replay --last   # the run rebuilt from its events alone"
"$orch" replay --last
say "orchestrail events query --type tool.denied --json"
"$orch" events query --type tool.denied --json
say "orchestrail verify"
"$orch" verify
cat <<MSG

Everything above is in $work/.orchestrail/events.db (SQLite). Look next:
  cd $work && $orch events query --all           # every event, in commit order
  cd $work && $orch events tail --from-start     # follow the trail live (Ctrl-C to stop)
  cd $work && $orch task show story-4-2.t1       # a task and its history
  cd $work && $orch replay --last --format html -o run.html   # one self-contained page
Tamper with it and verify names the event:
  sqlite3 $work/.orchestrail/events.db "DROP TRIGGER events_no_update; UPDATE events SET data='{}' WHERE type='tool.denied'"
  cd $work && $orch verify
MSG
