"""The gateway's routes: the seeds' API, OpenAI's API and the admin API, their request bodies,
and what the gateway knows of a client without a model."""
