"""Event backbone: envelope, topics, publisher, worker, outbox, idempotency, dead-lettering."""
