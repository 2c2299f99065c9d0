"""The decision: what a payload may be, whether the clock can be believed, and the policy over lists and entries."""
