"""The client code printed in the seed documents, copied verbatim, run against a real uvicorn gateway on
127.0.0.1:<free port>. Only the base URL differs. `requests` is synchronous, so each snippet runs in a thread
while the event loop keeps serving."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import textwrap

import pytest
import requests

from tests.gateway.conftest import live
from tests.seed_webhook import VERIFY_WEBHOOK

# ---- 001 FLUX Krea: "SDK Examples / Python", verbatim -------------------------------------------------------
FLUX_CLIENT = '''
import requests
from typing import Optional, Dict, Any

class FluxKreaClient:
    def __init__(self, api_url: str, api_key: Optional[str] = None):
        self.api_url = api_url.rstrip('/')
        self.api_key = api_key
        self.session = requests.Session()
        
        if api_key:
            self.session.headers['X-API-Key'] = api_key

    def generate(
        self,
        prompt: str,
        steps: int = 30,
        cfg_scale: float = 4.0,
        seed: int = -1,
        width: int = 1024,
        height: int = 1024
    ) -> str:
        """Generate an image from a prompt."""
        
        response = self.session.post(
            f"{self.api_url}/generate",
            json={
                "prompt": prompt,
                "steps": steps,
                "cfg_scale": cfg_scale,
                "seed": seed,
                "width": width,
                "height": height
            }
        )
        
        response.raise_for_status()
        data = response.json()
        
        if not data["success"]:
            raise Exception(data["error"])
        
        return data["image"]

    def health_check(self) -> Dict[str, Any]:
        """Check API health status."""
        response = self.session.get(f"{self.api_url}/health")
        response.raise_for_status()
        return response.json()
'''

# The seed's usage block, verbatim except the base URL (1024x1024 at 35 steps: slow on CPU, marked slow).
FLUX_USAGE = '''
# Usage
client = FluxKreaClient("http://localhost:7860")
image_data = client.generate(
    "A serene Japanese garden",
    steps=35,
    seed=42
)

# Save image
import base64
image_bytes = base64.b64decode(image_data.split(",")[1])
with open("generated.png", "wb") as f:
    f.write(image_bytes)
'''

# ---- 004 CyberImage: "Example Client Workflow", verbatim ----------------------------------------------------
CYBERIMAGE_WORKFLOW = '''
import requests
import time

API_BASE = "http://localhost:5050/api"

# 1. Get available models
models = requests.get(f"{API_BASE}/models").json()

# 2. Submit generation request
response = requests.post(f"{API_BASE}/generate", json={
    "model_id": "flux-1",
    "prompt": "A cyberpunk city at night with neon signs and flying cars",
    "settings": {
        "num_images": 2,
        "num_inference_steps": 35,
        "guidance_scale": 8.0
    }
})
job_id = response.json()["job_id"]

# 3. Poll for completion
while True:
    status = requests.get(f"{API_BASE}/status/{job_id}").json()

    # Display progress information
    if status["status"] == "processing" and "progress" in status:
        progress = status["progress"]
        if progress["generating"] and progress["step"] is not None:
            print(f"Generating: Step {progress['step']}/{progress['total_steps']}")

    if status["status"] == "completed":
        # 4. Download all generated images
        for i, image_info in enumerate(status["images"]):
            image_id = image_info["id"]
            image = requests.get(f"{API_BASE}/get_image/{image_id}")
            with open(f"generated_image_{i+1}.png", "wb") as f:
                f.write(image.content)
            print(f"Saved image {i+1}/{len(status['images'])}")
        break
    elif status["status"] == "failed":
        print(f"Generation failed: {status.get('message')}")
        break

    time.sleep(5)
'''

# ---- 003 Image Studio: "Code Examples / Python", verbatim ---------------------------------------------------
IMAGE_STUDIO_EXAMPLE = '''
import requests
import base64

# Generate Image
url = "https://api.alwrity.com/api/image-studio/create"
headers = {
    "Authorization": "Bearer YOUR_TOKEN",
    "Content-Type": "application/json"
}
data = {
    "prompt": "Modern office workspace",
    "template_id": "linkedin_post",
    "quality": "standard"
}
response = requests.post(url, json=data, headers=headers)
result = response.json()

# Decode image
image_data = base64.b64decode(result["results"][0]["image_base64"])
with open("generated_image.png", "wb") as f:
    f.write(image_data)
'''

# ---- 000 Freepik: "Webhook Security", verbatim --------------------------------------------------------------


def run_snippet(code: str, base_from: str, base_to: str) -> dict:
    namespace: dict = {}
    exec(compile(textwrap.dedent(code).replace(base_from, base_to), "<seed snippet>", "exec"), namespace)  # noqa: S102
    return namespace


async def test_flux_krea_client(live_gateway, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = run_snippet(FLUX_CLIENT, "", "")
    client = namespace["FluxKreaClient"](live_gateway)
    health = await asyncio.to_thread(client.health_check)
    assert health["status"] == "healthy" and health["version"]
    # 512x512 at 20 steps: the smallest request the seed allows (the client's defaults are 1024x1024 at 30).
    image = await asyncio.to_thread(client.generate, "A serene Japanese garden", steps=20, seed=42, width=512,
                                    height=512)
    assert image.startswith("data:image/png;base64,")
    with pytest.raises(requests.HTTPError) as failure:  # steps out of range: the documented 400
        await asyncio.to_thread(client.generate, "x", steps=10)
    assert failure.value.response.status_code == 400


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("IMAGEMESH_SLOW_TESTS"), reason="1024x1024 at 35 steps: minutes on CPU; "
                    "set IMAGEMESH_SLOW_TESTS=1")
async def test_flux_krea_usage_block(live_gateway, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    await asyncio.to_thread(run_snippet, FLUX_CLIENT + FLUX_USAGE, "http://localhost:7860", live_gateway)
    assert (tmp_path / "generated.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_cyberimage_polling_loop(live_gateway, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = await asyncio.to_thread(run_snippet, CYBERIMAGE_WORKFLOW, "http://localhost:5050", live_gateway)
    assert namespace["status"]["status"] == "completed", namespace["status"]
    assert (tmp_path / "generated_image_1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "generated_image_2.png").exists()
    assert "Saved image 2/2" in capsys.readouterr().out


async def test_image_studio_requests_example(mesh, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # The snippet sends "Bearer YOUR_TOKEN": run it against a gateway where that is a configured key.
    async with live(mesh, tmp_path / "db", api_keys="YOUR_TOKEN:docs-user") as base:
        await asyncio.to_thread(run_snippet, IMAGE_STUDIO_EXAMPLE, "https://api.alwrity.com", base)
    assert (tmp_path / "generated_image.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_freepik_verify_webhook_accepts_the_mesh_signature_scheme():
    namespace = run_snippet(VERIFY_WEBHOOK, "", "")
    verify_webhook = namespace["verify_webhook"]
    payload = json.dumps({"event": "generation.completed", "task_id": "task_12345"}).encode()
    signature = "sha256=" + hmac.new(b"secret", payload, hashlib.sha256).hexdigest()
    assert verify_webhook(payload, signature, "secret")
    assert not verify_webhook(payload + b" ", signature, "secret")


async def test_freepik_verify_webhook_on_a_real_delivery(tmp_path, webhook_sink):
    """A Freepik job with webhook_url: the orchestrator POSTs the documented payload, and the seed's verify_webhook
    (verbatim) accepts its X-Freepik-Signature. Loopback delivery needs both allow-lists (tests only)."""
    from tests.images import b64, disc_rgba
    from tests.mesh import start_mesh

    verify_webhook = run_snippet(VERIFY_WEBHOOK, "", "")["verify_webhook"]
    mesh = await start_mesh(tmp_path, {
        "orchestrator": {"url_allow_list": "127.0.0.1/32", "webhook_default_secret": "whsec-test",
                         "webhook_poll_interval_s": 0.1, "public_image_base_url": "http://gateway/v1/images/"},
        "gateway": {"url_allow_list": "127.0.0.1/32"}})
    try:
        reply = await mesh.http.post("/v1/post-process/upscale", json={
            "image_url": "data:image/png;base64," + b64(disc_rgba(16)), "scale_factor": 2,
            "webhook_url": webhook_sink.url})
        assert reply.status_code == 200, reply.text
        assert reply.json()["webhook_callback"] is True
        for _ in range(300):
            if webhook_sink.received:
                break
            await asyncio.sleep(0.1)
        assert webhook_sink.received, "no webhook delivered"
        headers, body = webhook_sink.received[-1]
        signature = {k.lower(): v for k, v in headers.items()}["x-freepik-signature"]
        assert verify_webhook(body, signature, "whsec-test")
        assert not verify_webhook(body, signature, "another-secret")
        payload = json.loads(body)
        assert payload["task_id"] == reply.json()["task_id"] and payload["event"].endswith(".completed")
        assert payload["data"]["status"] == "completed"
    finally:
        await mesh.close()
