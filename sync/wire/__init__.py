"""What device and hub both speak: the entries batch, signed bundles, list records, status and ack messages,
the MQTT client."""
