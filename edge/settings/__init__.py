"""The appliance's settings: the TOML file's models (schema, with one module per part: device, sources,
decision, outputs, network, screens, root), reading them (loading), pushed configuration layered over
them (layers), and the generated reference (reference: docs/config.md)."""
