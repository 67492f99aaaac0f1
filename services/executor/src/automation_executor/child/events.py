"""The ``event.emit`` step: publish one event to ``automation.events``, through the executor.

``subject`` and ``data`` are rendered as data (a string of ``data`` that is exactly one template keeps
the value's JSON type); ``source`` as text. The child asks the executor (:mod:`automation_executor.bridge`),
which refuses platform types, defaults the source to ``/automation/jobs/<job_id>``, derives the event id
from the execution, attempt and emission (so a rerun of a lost attempt publishes the same id) and
publishes with a confirm. Output: ``{id, type, source, subject}``.
"""

from __future__ import annotations

from automation_executor.child.bridge import BridgeFailure
from automation_executor.child.env import StepEnv
from automation_executor.domain.protocol import StepMessage
from automation_executor.domain.steps import EventEmitConfig, ParsedStep
from automation_executor.domain.templates import TemplateContext, render_json, render_text


async def run_event_emit(step: ParsedStep, ctx: TemplateContext, env: StepEnv) -> StepMessage:
    """Publish the event; its id, type, source and subject are the output."""
    config = step.config
    assert isinstance(config, EventEmitConfig)
    args = {
        "type": config.type,
        "source": render_text(config.source, ctx) if config.source is not None else None,
        "subject": render_text(config.subject, ctx) if config.subject is not None else None,
        "data": render_json(config.data, ctx) if config.data is not None else {},
        "key": env.emit_key(step.name),
    }
    try:
        published = await env.bridge.request("emit", args, step=step.name)
    except BridgeFailure as exc:
        return StepMessage(name=step.name, status="failed", error=f"event {config.type}: {exc}")
    env.emitter.log("system", step.name, f"published {config.type} ({published.get('id')})")
    return StepMessage(name=step.name, status="succeeded", output=published)
