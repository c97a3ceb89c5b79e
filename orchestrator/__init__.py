"""orchestrail's orchestrator: backlog, dispatch, runs, replay, audit and the CLI."""
