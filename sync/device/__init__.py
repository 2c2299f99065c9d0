"""The device's side of sync: the outbox agent and the receiver of pushed configuration, lists and trust."""
