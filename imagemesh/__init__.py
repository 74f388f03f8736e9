"""imagemesh: the Python SDK (Client, AsyncClient) and the `imagemesh` command line (imagemesh.cli)."""

from imagemesh.client import DEFAULT_URL, AsyncClient, Client, default_base_url
from imagemesh.errors import ConnectionFailed, ImageMeshError
from imagemesh.models import (
    Cutout,
    Cutouts,
    GenerateSubmission,
    Health,
    JobPage,
    ProgressEvent,
    Task,
    WorkflowExecution,
    WorkflowInfo,
    WorkflowStep,
)

__all__ = [
    "DEFAULT_URL", "AsyncClient", "Client", "ConnectionFailed", "Cutout", "Cutouts", "GenerateSubmission", "Health",
    "ImageMeshError", "JobPage", "ProgressEvent", "Task", "WorkflowExecution", "WorkflowInfo", "WorkflowStep",
    "default_base_url",
]
