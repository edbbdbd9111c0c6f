"""Composition root: logging, the FunctionApp, and one blueprint per trigger. Nothing else."""

import azure.functions as func

from functions.alerts_eventgrid import bp as alerts_eventgrid
from functions.alerts_eventhub import bp as alerts_eventhub
from functions.alerts_http import bp as alerts_http
from functions.approvals_http import bp as approvals_http
from functions.approvals_timer import bp as approvals_timer
from functions.cleanup_worker import bp as cleanup_worker
from functions.intake_worker import bp as intake_worker
from functions.overflow_worker import bp as overflow_worker
from functions.preflight_timer import bp as preflight_timer
from functions.remediation_worker import bp as remediation_worker
from functions.reports_http import bp as reports_http
from functions.risk_poller import bp as risk_poller
from functions.sweeps import bp as sweeps
from shared.logs import configure_logging

configure_logging()

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(remediation_worker)
app.register_functions(cleanup_worker)
app.register_functions(overflow_worker)
app.register_functions(sweeps)
app.register_functions(alerts_http)
app.register_functions(alerts_eventgrid)
app.register_functions(alerts_eventhub)
app.register_functions(intake_worker)
app.register_functions(risk_poller)
app.register_functions(approvals_http)
app.register_functions(approvals_timer)
app.register_functions(reports_http)
app.register_functions(preflight_timer)
