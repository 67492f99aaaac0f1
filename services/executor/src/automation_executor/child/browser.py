"""The ``browser`` step: the actions go to browser-pool as one ``browser.task``, through the executor.

Templates in the actions are rendered as data: a ``url`` is rendered with percent-encoding (a ``url``
that is exactly one template takes the value as the whole URL), every other string as literal text (a
``fill`` value stays the text typed into the field, whatever it contains). Templates in ``evaluate``
expressions are refused when the job is checked: that is code. The child has no broker connection; it
asks the executor (:mod:`automation_executor.bridge`), which sends the task and waits for the reply.

Output: the ``browser.result`` data (``ok``, ``title``, ``url``, ``outputs``, ``artifacts``, ``error``,
``duration_seconds``, ``task_id``). A task that is not ``ok`` fails the step with browser-pool's error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automation_executor.child.bridge import BridgeFailure
from automation_executor.child.env import StepEnv
from automation_executor.domain.protocol import StepMessage
from automation_executor.domain.steps import BrowserConfig, ParsedStep
from automation_executor.domain.templates import TemplateContext, render_json, render_url


def render_action(action: Mapping[str, Any], ctx: TemplateContext) -> dict[str, Any]:
    """One action with its templates rendered (URLs percent-encoded, everything else as data)."""
    rendered: dict[str, Any] = {}
    for key, value in action.items():
        if key == "url" and isinstance(value, str):
            rendered[key] = render_url(value, ctx)
        elif key == "cookies" and isinstance(value, list):
            rendered[key] = [render_action(cookie, ctx) if isinstance(cookie, Mapping) else cookie for cookie in value]
        else:
            rendered[key] = render_json(value, ctx)
    return rendered


async def run_browser(step: ParsedStep, ctx: TemplateContext, env: StepEnv) -> StepMessage:
    """Send the task and wait for browser-pool's result."""
    config = step.config
    assert isinstance(config, BrowserConfig)
    actions = [render_action(action, ctx) for action in config.actions]
    args = {
        "actions": actions,
        "timeout_seconds": config.timeout,
        "viewport": config.viewport.model_dump() if config.viewport is not None else None,
    }
    env.emitter.log("system", step.name, f"browser task: {len(actions)} actions, timeout {config.timeout:g}s")
    try:
        result = await env.bridge.request("browser", args, step=step.name)
    except BridgeFailure as exc:
        return StepMessage(name=step.name, status="failed", error=f"browser task: {exc}")
    if not isinstance(result, dict):
        return StepMessage(name=step.name, status="failed", error="browser task: the executor answered no result")
    artifacts = ", ".join(f"{a.get('kind')} {a.get('id')}" for a in result.get("artifacts", []))
    env.emitter.log(
        "system",
        step.name,
        f"browser task {'ok' if result.get('ok') else 'failed'} in {result.get('duration_seconds', 0):.2f}s"
        + (f"; artifacts: {artifacts}" if artifacts else ""),
    )
    if not result.get("ok"):
        return StepMessage(name=step.name, status="failed", output=result, error=f"browser: {result.get('error')}")
    return StepMessage(name=step.name, status="succeeded", output=result)
