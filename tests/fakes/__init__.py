"""Stand-ins for services this machine cannot reach (model APIs, EventStoreDB)."""
