"""Backends, imported lazily by ``eventstore.urls.open_store`` so unused drivers never load."""
