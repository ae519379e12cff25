"""Stand-ins for tests and benchmarks only (a fault-injecting chat server, a tiny CLIP); the library never
imports this package."""
