"""The controller: makes what runs match what users asked for."""
