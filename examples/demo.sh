#!/usr/bin/env bash
# The demo (no API key needed): a story is imported into the backlog and `orchestrail run`
# dispatches its tasks, in dependency order, to the subagents in .claude/agents/
# (backend-implementer, then a reviewer), each in its own git worktree, driven by scripted
# model turns. Every action lands in the embedded SQLite trail, which we then list, replay
# and verify. Runs in a scratch git repository.
#
# The same run against a real model: see the end of the output (a fresh store, then
#   ANTHROPIC_API_KEY=... orchestrail run --provider anthropic --run-max-usd 2).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
orch="$here/.venv/bin/orchestrail"
work=${ORCHESTRAIL_DEMO_DIR:-$(mktemp -d -t orchestrail-demo.XXXXXX)}
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

# A scratch project under git, with the repository's own subagents.
mkdir -p "$work/.claude/agents" && cd "$work"
cp "$here/.claude/agents/backend-implementer.md" "$here/.claude/agents/reviewer.md" .claude/agents/
cp "$here/examples/stories/story-4.2-event-store-backend-selection.md" story-4.2.md
printf '__pycache__/\n.pytest_cache/\n' > .gitignore
git init -q . && git add -A && git -c user.name=demo -c user.email=demo@example.com commit -qm init

say "orchestrail init   # orchestrail.yaml (store: SQLite at .orchestrail/events.db)"
"$orch" init
say "orchestrail agents list"
"$orch" agents list
say "orchestrail task import story-4.2.md --agent backend-implementer --sequential"
"$orch" task import story-4.2.md --agent backend-implementer --sequential
say "orchestrail task add \"Review the event store backends\" --agent reviewer --depends-on story-4-2.t6 ..."
"$orch" task add "Review the event store backends" --id story-4-2.review --agent reviewer \
    --depends-on story-4-2.t6 \
    --prompt "Review the work on story 4.2 (git log, the store/ package), run the tests, report problems."
say "orchestrail task ready"
"$orch" task ready
say "orchestrail run --script story-4.2.yaml --review --run-id demo-run   # script provider: no API key; a reviewer judges each result"
"$orch" run --script "$here/examples/scripts/story-4.2.yaml" --review --run-id demo-run
say "git log --oneline --graph orchestrail/   # one branch per task, in .orchestrail/worktrees/"
git log --oneline --graph --branches='orchestrail/*' | head -20
say "orchestrail runs"
"$orch" runs
say "orchestrail replay --last --agent reviewer   # the run rebuilt from its events alone"
"$orch" replay --last --agent reviewer
say "orchestrail events query --type tool.denied"
"$orch" events query --type tool.denied
say "orchestrail verify"
"$orch" verify
say "orchestrail rerun demo-run --run-id demo-rerun   # execute it again: recorded model turns, tools for real, each task from its worktree's base"
"$orch" rerun demo-run --run-id demo-rerun
say "orchestrail diff demo-run demo-rerun"
"$orch" diff demo-run demo-rerun
cat <<MSG

Everything above is in $work/.orchestrail/events.db (SQLite). Look next:
  cd $work && $orch replay demo-run               # the whole run: tasks, sessions, turns, tools
  cd $work && $orch replay demo-run --format html -o run.html   # one self-contained page
  cd $work && $orch audit demo-run                # who did what, tools, denials, cost
  cd $work && $orch task show story-4-2.t5        # a task and its history
  cd $work && git diff HEAD orchestrail/\$(ls .orchestrail/worktrees)/story-4-2.review   # all the work
Against a real model (same project, a fresh store):
  cd $work && export ORCHESTRAIL_STORE=sqlite:///$work/.orchestrail/real.db
  $orch task import story-4.2.md --agent backend-implementer --sequential
  ANTHROPIC_API_KEY=... $orch run --provider anthropic --run-max-usd 2
Tamper with the trail and verify names the event:
  sqlite3 $work/.orchestrail/events.db "DROP TRIGGER events_no_update; UPDATE events SET data='{}' WHERE type='tool.denied'"
  cd $work && $orch verify
MSG
