from sample_models import metadata

from automation_db import run_env

run_env(metadata)
