"""podlog's saved objects import into a real OpenSearch Dashboards.

With a Docker daemon, OpenSearch and OpenSearch Dashboards (the compose
stack's images, security off) start on one network through Testcontainers;
the saved objects are POSTed to the import API as the compose stack's
importer does, and the "podlog overview" dashboard and every object it
references are then read back.  Without Docker that test skips at once (the
session probes the daemon's ``/_ping`` for 1 s); the request it would send is
checked against a local HTTP server instead.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import DOCKER
from tests.fixtures.servers import wait_for
from tests.integration.dashboards.client import (
    COMPOSE,
    NDJSON,
    compose_image,
    image_version,
    import_saved_objects,
    is_green,
    request_json,
    saved_objects,
)

OPENSEARCH_IMAGE = compose_image("opensearch")
DASHBOARDS_IMAGE = compose_image("dashboards")
DASHBOARD_ID = "podlog-overview"
STARTUP_SECONDS = 300.0
"""How long each server may take to answer once its container runs (the image pull comes before)."""
NO_DOCKER = (
    f"no Docker daemon answers /_ping at {os.environ.get('DOCKER_HOST', 'unix:///var/run/docker.sock')} "
    "within 1 s: the import needs OpenSearch and OpenSearch Dashboards containers"
)


def test_images_are_the_compose_stacks_at_one_version() -> None:
    """The test runs what docker-compose.yml runs: OpenSearch and Dashboards 2.x of
    one version (Dashboards refuses an OpenSearch of another version)."""
    assert OPENSEARCH_IMAGE.startswith("opensearchproject/opensearch:"), OPENSEARCH_IMAGE
    assert DASHBOARDS_IMAGE.startswith("opensearchproject/opensearch-dashboards:"), DASHBOARDS_IMAGE
    version = image_version(OPENSEARCH_IMAGE)
    assert version.startswith("2."), f"{COMPOSE.name}: OpenSearch {version} is not 2.x"
    assert image_version(DASHBOARDS_IMAGE) == version, f"{COMPOSE.name}: Dashboards and OpenSearch differ"


class _Recorder(BaseHTTPRequestHandler):
    """Answers every POST as the import API does on success, and keeps the request."""

    requests: list[tuple[str, dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.requests.append((self.path, dict(self.headers.items()), body))
        reply = json.dumps({"success": True, "successCount": 1}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test asserts on the recorded requests."""


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[tuple[str, dict[str, str], bytes]]]]:
    """A local HTTP server that records requests; (base URL, requests)."""
    requests: list[tuple[str, dict[str, str], bytes]] = []
    handler = type("Recorder", (_Recorder,), {"requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="dashboards-recorder", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_import_request_is_the_multipart_form_the_api_takes(
    recorder: tuple[str, list[tuple[str, dict[str, str], bytes]]],
) -> None:
    """The request carries osd-xsrf, overwrite=true, and the file unchanged as the
    form part ``file`` named podlog.ndjson, as ``curl --form file=@...`` sends it."""
    base, requests = recorder
    status, reply = import_saved_objects(base)
    assert (status, reply) == (200, {"success": True, "successCount": 1})
    ((path, headers, body),) = requests
    assert path == "/api/saved_objects/_import?overwrite=true"
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered["osd-xsrf"] == "true"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {lowered['content-type']}\r\n\r\n".encode() + body
    )
    assert message.get_content_type() == "multipart/form-data"
    (part,) = message.iter_parts()
    assert part.get_param("name", header="content-disposition") == "file"
    assert part.get_filename() == "podlog.ndjson"
    assert part.get_payload(decode=True) == NDJSON.read_bytes()


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.skipif(not DOCKER, reason=NO_DOCKER)
def test_saved_objects_import_into_opensearch_dashboards() -> None:
    """Every saved object imports into OpenSearch Dashboards (success, one count per
    object), and the "podlog overview" dashboard and each object it references read back."""
    import docker.types  # type: ignore[import-untyped]
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

    objects = saved_objects()
    with Network() as network:
        opensearch = (
            DockerContainer(OPENSEARCH_IMAGE)
            .with_network(network)
            .with_network_aliases("opensearch")
            .with_env("discovery.type", "single-node")
            .with_env("DISABLE_SECURITY_PLUGIN", "true")
            .with_env("DISABLE_INSTALL_DEMO_CONFIG", "true")
            .with_env("OPENSEARCH_JAVA_OPTS", "-Xms512m -Xmx512m")
            .with_exposed_ports(9200)
            .with_kwargs(ulimits=[docker.types.Ulimit(name="nofile", soft=65536, hard=65536)])
        )
        dashboards = (
            DockerContainer(DASHBOARDS_IMAGE)
            .with_network(network)
            .with_network_aliases("dashboards")
            .with_env("OPENSEARCH_HOSTS", '["http://opensearch:9200"]')
            .with_env("DISABLE_SECURITY_DASHBOARDS_PLUGIN", "true")
            .with_exposed_ports(5601)
        )
        with opensearch:
            search_url = f"http://{opensearch.get_container_host_ip()}:{opensearch.get_exposed_port(9200)}"
            wait_for(
                lambda: (
                    request_json(f"{search_url}/_cluster/health?wait_for_status=yellow&timeout=1s", timeout=5.0)[0]
                    == 200
                ),
                STARTUP_SECONDS,
                f"{OPENSEARCH_IMAGE} to report yellow health",
                interval=1.0,
            )
            with dashboards:
                base = f"http://{dashboards.get_container_host_ip()}:{dashboards.get_exposed_port(5601)}"
                wait_for(lambda: is_green(base), STARTUP_SECONDS, f"{DASHBOARDS_IMAGE} /api/status green", interval=1.0)

                status, reply = import_saved_objects(base)
                assert status == 200, reply
                # 200 also answers a partial import: the reply itself must say success.
                assert reply["success"] is True, reply.get("errors")
                assert reply["successCount"] == len(objects), reply
                if "successResults" in reply:
                    imported = {(r["type"], r["id"]) for r in reply["successResults"]}
                    assert imported == {(o["type"], o["id"]) for o in objects}

                status, dashboard = request_json(f"{base}/api/saved_objects/dashboard/{DASHBOARD_ID}")
                assert status == 200, dashboard
                (expected,) = [o for o in objects if (o["type"], o["id"]) == ("dashboard", DASHBOARD_ID)]
                assert dashboard["attributes"]["title"] == expected["attributes"]["title"]
                assert dashboard["references"], "the dashboard references no panels"
                for reference in dashboard["references"]:
                    status, found = request_json(f"{base}/api/saved_objects/{reference['type']}/{reference['id']}")
                    assert status == 200, f"{reference['type']}/{reference['id']} is missing: {found}"

                # The compose importer runs again on every start: a second import overwrites cleanly.
                status, again = import_saved_objects(base)
                assert (status, again["success"], again["successCount"]) == (200, True, len(objects)), again
