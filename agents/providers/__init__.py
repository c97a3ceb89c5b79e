"""Model providers behind one interface (``agents.providers.base.Provider``).

Imported lazily by name (``get_provider``) so an SDK loads only when its provider is used.
"""
