"""Timer: the preflight (schedule: app setting RESPONDER_PREFLIGHT_SCHEDULE, default once a
day at 06:30 UTC) and at each start of the app.

`run_on_startup=True`: "the function is invoked when the runtime starts", which happens when
the app wakes up after going idle, restarts (a deployment, a settings change) and scales out;
Microsoft advises using it rarely, especially in production
(https://learn.microsoft.com/en-us/javascript/api/@azure/functions/timertriggeroptions).
The preflight only reads, so running it after each deployment is what we want; the price is
that on the Flex Consumption plan, which scales to zero and out per function, it may also run
at cold starts and on new instances, several times a day. The Flex Consumption pages found
say nothing more specific about start-up runs, so expect that and do not rely on it running
exactly once per deployment.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.runtime import services
from shared.preflight import announce, run_preflight

bp = func.Blueprint()
log = logging.getLogger("responder.functions.preflight")
SCHEDULE_SETTING = "RESPONDER_PREFLIGHT_SCHEDULE"
"""The app setting (6-field NCRONTAB) the timer binds; infra/ deploys it."""


@bp.function_name("preflight")
@bp.timer_trigger(arg_name="timer", schedule=f"%{SCHEDULE_SETTING}%", run_on_startup=True,
                  use_monitor=True)
async def preflight(timer: func.TimerRequest) -> None:
    """Log the preflight table; notify the SOC when an enabled feature cannot run. A missing
    right is not a failure of this function: it is reported, not retried."""
    svc = await services()
    report = await run_preflight(svc)
    counts = report.counts()
    if report.ok:
        log.info("preflight OK (%d ok, %d warning(s))\n%s", counts["ok"], counts["warning"],
                 report.text())
        return
    log.error("preflight: %d missing, some enabled features cannot run\n%s",
              counts["missing"], report.text())
    await announce(svc, report)
