"""The embedded dev stack: broker, store and the six services under supervisord."""
