"""Dependencies the routers declare: the composition, the caller's account, paging parameters."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Query, Request

from automation_core.errors import Unavailable
from automation_core.http import CurrentPrincipal
from automation_job_api.bootstrap import JobApi
from automation_job_api.domain.cursor import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE


def get_job_api(request: Request) -> JobApi:
    """The composition the lifespan stored; 503 while the service starts or stops."""
    job_api: JobApi | None = getattr(request.app.state, "job_api", None)
    if job_api is None:
        raise Unavailable("job-api is starting or stopping")
    return job_api


def current_account(principal: CurrentPrincipal) -> uuid.UUID:
    """The caller's account; 403 for the admin token, which acts for no account."""
    return principal.require_account()


JobApiDep = Annotated[JobApi, Depends(get_job_api)]
CurrentAccount = Annotated[uuid.UUID, Depends(current_account)]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page.")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size.")]
DEFAULT_LIMIT = DEFAULT_PAGE_SIZE
