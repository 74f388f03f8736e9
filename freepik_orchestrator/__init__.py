"""The Python SDK as seed 000 ("SDKs / Python SDK") prints it:

    from freepik_orchestrator import FreepikClient
    client = FreepikClient(api_key="your-api-key")
    result = await client.generate(prompt="Professional headshot", model="auto")
    workflow_result = await client.execute_workflow("professional_headshot", prompt="Business portrait")

It is imagemesh's AsyncClient under the seed's name: `generate` answers the seed's generate response
(task_id, model_used, status, estimated_completion, webhook_callback), `execute_workflow` its workflow execution.
The base URL defaults to IMAGEMESH_URL or http://127.0.0.1:8080.
"""

from __future__ import annotations

from typing import Any

from imagemesh.client import AsyncClient
from imagemesh.errors import ImageMeshError


class FreepikClient(AsyncClient):
    def __init__(self, api_key: str | None = None, base_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(api_key=api_key, base_url=base_url, **kwargs)


FreepikError = ImageMeshError

__all__ = ["FreepikClient", "FreepikError"]
