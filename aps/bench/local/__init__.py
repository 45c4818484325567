"""Local processes the benchmarks and tests start and stop on 127.0.0.1, by PID: `aps serve`
(`server`), vLLM and LiteLLM (`engines`), `redis-server` (`redis_server`), a throwaway
PostgreSQL (`postgres_server`), and what they share (`processes`: free ports, waiting for
readiness, stopping)."""
