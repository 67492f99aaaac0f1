"""job-api: the Automation Platform's public REST API (accounts, API keys, jobs, executions)."""
