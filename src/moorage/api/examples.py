"""The reference page's own request bodies, shown in the OpenAPI docs."""

from __future__ import annotations

from typing import Any

CREATE_EXAMPLE: dict[str, Any] = {
    "reference": {
        "summary": "The reference's Flask example",
        "value": {
            "name": "test-flask-server-9",
            "description": "test",
            "payment_type": "usd",
            "resource_metadata": {
                "flavor_id": "69475e82e81c4dd6be3467e2ca374e0c",
                "scale_type": "manual",
                "target_instance_number": 1,
            },
            "deploy_metadata": {
                "image_url": "python:3.10-slim",
                "command": "pip install flask && apt update && apt install -y curl && curl -O "
                "https://raw.githubusercontent.com/huang-hf/share_data/refs/heads/main/app.py "
                "&& python app.py",
                "port": 8080,
                "gpu_num": 0,
            },
        },
    }
}

UPDATE_EXAMPLE: dict[str, Any] = {
    "scale": {
        "summary": "Scale to two replicas (numbers may be strings)",
        "value": {"resource_metadata": {"target_instance_number": "2"}},
    }
}
