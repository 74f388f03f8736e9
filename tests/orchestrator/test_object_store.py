"""The chart's objectStore values work end to end: the orchestrator container's rendered environment, pointed at
an S3-compatible server (moto on loopback), makes the orchestrator keep its images in the bucket."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from services.orchestrator.server import create_server
from services.orchestrator.settings import OrchestratorSettings
from shared import clients
from shared.clients import create_channel
from shared.errors import NotFound
from shared.gen.imagemesh.v1 import common_pb2
from shared.gen.imagemesh.v1 import orchestrator_service_pb2 as pb
from shared.gen.imagemesh.v1 import orchestrator_service_pb2_grpc as orch_grpc
from tests.deploy.conftest import by_component, env_of, render
from tests.mesh import service_kwargs
from tests.orchestrator.conftest import WORKFLOWS
from tests.orchestrator.helpers import size_of, submit, upscale_spec, wait_for
from tests.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, s3_server  # noqa: F401 - the fixture


def orchestrator_env(endpoint_url: str, bucket: str) -> tuple[dict[str, str], str]:
    """The orchestrator container's literal env and the name of the Secret it takes env from."""
    docs = render("default", "imageStore.type=objectStore", f"imageStore.objectStore.url=s3://{bucket}/mesh",
                  f"imageStore.objectStore.endpointUrl={endpoint_url}", f"imageStore.objectStore.region={REGION}",
                  "imageStore.objectStore.addressingStyle=path",
                  "imageStore.objectStore.credentialsSecret=imagemesh-s3")
    (container,) = by_component(docs, "Deployment")["orchestrator"]["spec"]["template"]["spec"]["containers"]
    env = {name: e["value"] for name, e in env_of(container).items() if "value" in e}
    (secret,) = [source["secretRef"]["name"] for source in container["envFrom"] if "secretRef" in source]
    return env, secret


async def test_an_orchestrator_configured_by_the_chart_stores_images_in_the_bucket(
        s3_server, upscale_address, tmp_path, monkeypatch):  # noqa: F811
    bucket = s3_server.new_bucket()
    env, secret = orchestrator_env(s3_server.endpoint_url, bucket)
    assert env["IMAGEMESH_IMAGE_STORE_URL"] == f"s3://{bucket}/mesh"
    # The pod's environment, with the Secret's keys as the kubelet would add them.
    for name, value in {**env, "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY}.items():
        monkeypatch.setenv(name, value)
    assert secret == "imagemesh-s3"
    # Only what cannot work outside a cluster is replaced: listen address, ports, state dir, database, peers.
    settings = OrchestratorSettings(**service_kwargs(tmp_path), database_url=f"sqlite:///{tmp_path / 'jobs.db'}",
                                    upscale_address=upscale_address, workflows_dir=WORKFLOWS)
    assert settings.image_store_url == f"s3://{bucket}/mesh" and settings.s3_endpoint_url == s3_server.endpoint_url

    runtime, port = create_server(settings)
    await runtime.start()
    channel = create_channel(f"127.0.0.1:{port}")
    try:
        stub = orch_grpc.OrchestratorServiceStub(channel)
        job = await submit(stub, upscale_spec(16, 2), owner="alice")
        done = await wait_for(stub, job.id)
        assert done.status == common_pb2.JOB_STATUS_COMPLETED
        input_ref, output_ref = job.spec.upscale.image.ref, done.result.upscale.image.ref

        keys = set(s3_server.keys(bucket))
        for ref in (input_ref, output_ref):
            assert {f"mesh/images/{ref}", f"mesh/images/{ref}.json"} <= keys
        record = json.loads(s3_server.client().get_object(Bucket=bucket, Key=f"mesh/images/{output_ref}.json")
                            ["Body"].read())
        assert (record["owner"], record["job_id"]) == ("alice", job.id)
        # Nothing went to a pod-local folder.
        assert not (tmp_path / "images").exists() or not any((tmp_path / "images").iterdir())

        image = await clients.call(stub.GetImage, pb.GetImageRequest(ref=output_ref, owner="alice"))
        assert size_of(image.image.data) == (32, 32)

        # A client is handed the bucket's own expiring URL (the bytes skip the gateway), for the image and its
        # thumbnail; another owner gets no URL at all.
        direct = await clients.call(stub.GetImage, pb.GetImageRequest(ref=output_ref, owner="alice", prefer_url=True))
        assert not direct.image.data and "X-Amz-Expires=3600" in direct.url
        assert direct.url_expires_at.seconds > time.time() + 3000
        async with httpx.AsyncClient() as http:
            fetched = await http.get(direct.url)
            assert fetched.status_code == 200 and size_of(fetched.content) == (32, 32)
            thumb = await clients.call(stub.GetImage, pb.GetImageRequest(ref=output_ref, owner="alice",
                                                                           thumbnail=True, prefer_url=True))
            fetched = await http.get(thumb.url)
            assert fetched.status_code == 200 and fetched.content[8:12] == b"WEBP"
        assert f"mesh/images/{output_ref}.thumb.webp" in set(s3_server.keys(bucket))  # made when first asked for
        with pytest.raises(NotFound):
            await clients.call(stub.GetImage, pb.GetImageRequest(ref=output_ref, owner="mallory", prefer_url=True))
    finally:
        await channel.close()
        await runtime.stop(0)
