"""``GET /schemas/<type>.v<version>.json``: the JSON Schema an event's ``ce_dataschema`` names, from the contract
package, its ``$id`` under this deployment's ``SCHEMA_BASE_URL``. Public like the probes: a schema holds no data."""

from __future__ import annotations

import json

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import Response

from stepwise_contract.envelope import dataschema_url, parse_dataschema, schema_base
from stepwise_contract.json_schema import load

MEDIA_TYPE = "application/schema+json"

router = APIRouter()


@router.get("/schemas/{name}", include_in_schema=False)
async def data_schema(name: str) -> Response:
    named = None if "/" in name else parse_dataschema(schema_base() + name)
    schema = load(dataschema_url(*named)) if named else None
    if schema is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such event schema")
    return Response(json.dumps(schema, indent=2, ensure_ascii=False), media_type=MEDIA_TYPE)
