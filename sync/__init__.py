"""MQTT sync between the appliance and the hub (see the sync issues); the offline appliance needs none of it."""
