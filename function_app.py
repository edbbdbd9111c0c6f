"""Composition root: logging, the FunctionApp, and one blueprint per trigger. Nothing else."""

import azure.functions as func

from functions.remediation_worker import bp as remediation_worker
from shared.logs import configure_logging

configure_logging()

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(remediation_worker)
