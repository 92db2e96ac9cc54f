"""Domain models: plain, immutable values the services and the controller decide on."""
