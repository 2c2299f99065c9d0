"""The appliance's settings: the TOML file's models (schema) and pushed configuration layered over it."""
