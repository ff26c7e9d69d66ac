"""fakesnow's Snowflake-wire server (PyPI `fakesnow`), with the one adaptation dlt's `snowflake`
destination needs: run as `python tests/fakesnow_server.py PORT` from a venv of its own
(`make engines` builds it: fakesnow wants newer duckdb and sqlglot than this project allows), so
this file imports nothing of the project.

Adapted here (fakesnow's own server otherwise, unchanged):

dlt sends several statements in one request (`TRUNCATE a; TRUNCATE b;`, with the connector's
MULTI_STATEMENT_COUNT=0), which Snowflake runs one after another; fakesnow's server runs one
statement a request. Here such a request runs its statements in order on the session's
connection and answers with the last one's result (dlt reads none of the others'); a statement
that fails is answered by fakesnow itself, with Snowflake's error, and the rest are not run.
dlt's PUT, COPY INTO and REMOVE are written in a Snowflake syntax fakesnow does not read (see
bare_stages), and its pipeline state is copied from JSON by column name (see _inserts).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import sys

import fakesnow.copy_into as fakesnow_copy
import fakesnow.server as fakesnow_server
import snowflake.connector.errors
import sqlglot
import uvicorn
from sqlglot import exp
from sqlglot.tokens import TokenType
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

QUERY_PATH = "/queries/v1/query-request"


def statements(sql: str) -> list[str]:
    """`sql` split at its top-level semicolons (by sqlglot's tokenizer: none inside a string or a
    comment), without empty statements."""
    cuts, start = [], 0
    for token in sqlglot.tokenize(sql, read="snowflake"):
        if token.token_type == TokenType.SEMICOLON:
            cuts.append(sql[start:token.start])
            start = token.end + 1
    cuts.append(sql[start:])
    return [s.strip() for s in cuts if s.strip()]


# A stage location as a string literal, '@"DATASET"."%TABLE"/"load id"/file': Snowflake's syntax,
# which dlt writes in PUT, COPY INTO and REMOVE. fakesnow reads a stage only as a bare name, and
# its path without quotes: @"DATASET"."%TABLE"/load id/file.
_STAGE_LITERAL = re.compile(r"'(@(?:\"[^\"]*\"|[^'/\"\s])+(?:\.(?:\"[^\"]*\"|[^'/\"\s.])+)*)((?:/[^'/]*)*)'")


# dlt separates a file format's options with commas, as Snowflake allows; fakesnow's sqlglot reads
# them into a shape fakesnow refuses, and reads them separated by spaces, as Snowflake allows too.
# Likewise MATCH_BY_COLUMN_NAME='CASE_INSENSITIVE', which fakesnow reads only unquoted.
_MATCH_BY = re.compile(r"(MATCH_BY_COLUMN_NAME\s*=\s*)'(\w+)'", re.IGNORECASE)
_FILE_FORMAT = re.compile(r"(FILE_FORMAT\s*=\s*\()([^()]*)(\))", re.IGNORECASE)


def bare_stages(sql: str) -> str:
    """A PUT, COPY INTO or REMOVE as fakesnow reads it: stage literals bare, file format options
    without commas; any other statement unchanged."""
    if not re.match(r"\s*(PUT|COPY|REMOVE|LIST)\b", sql, re.IGNORECASE):
        return sql
    sql = _MATCH_BY.sub(r"\1\2", _STAGE_LITERAL.sub(lambda m: m.group(1) + m.group(2).replace('"', ""), sql))
    return _FILE_FORMAT.sub(lambda m: m.group(1) + re.sub(r"('(?:[^']|'')*')|,", lambda o: o.group(1) or " ",
                                                          m.group(2)) + m.group(3), sql)


async def query_request(request: Request):
    raw = await request.body()
    zipped = request.headers.get("Content-Encoding") == "gzip"
    body = json.loads(gzip.decompress(raw) if zipped else raw)
    if os.environ.get("FAKESNOW_TRACE"):
        print("SQL:", body.get("sqlText", "")[:500], flush=True)
    parts = [bare_stages(part) for part in statements(body.get("sqlText", ""))]
    if len(parts) == 1 and parts[0] != body.get("sqlText"):
        body["sqlText"] = parts[0]
        encoded = json.dumps(body).encode()
        request._body = gzip.compress(encoded) if zipped else encoded
    elif len(parts) > 1 and not body.get("bindings") and not body.get("describeOnly"):
        conn = fakesnow_server.to_conn(fakesnow_server.to_token(request))
        last = parts[-1]
        for part in parts[:-1]:
            try:
                await run_in_threadpool(conn.cursor().execute, part, server=True)
            except (snowflake.connector.errors.ProgrammingError, snowflake.connector.errors.OperationalError):
                last = part  # fakesnow runs it again below and answers with its error
                break
        body["sqlText"] = last
        encoded = json.dumps(body).encode()
        request._body = gzip.compress(encoded) if zipped else encoded  # starlette serves body() from here
    return await fakesnow_server.query_request(request)


_fakesnow_inserts = fakesnow_copy._inserts


def _inserts(expr, params, urls, parquet_info=None):
    """COPY INTO of newline-delimited JSON by column name (MATCH_BY_COLUMN_NAME, how dlt loads its
    pipeline state, always as JSONL): each key into the column of its name. fakesnow loads JSON
    as one VARIANT column only."""
    if (isinstance(params.file_format, fakesnow_copy.ReadJSON)
            and params.match_by_column_name != fakesnow_copy.MatchByColumnName.NONE
            and not isinstance(expr.args["files"][0], exp.Subquery)):
        return [exp.Insert(this=expr.this, by_name=True, expression=exp.select("*").from_(
                    exp.Table(this=exp.func("read_json_auto", exp.Literal.string(url))))) for url in urls]
    return _fakesnow_inserts(expr, params, urls, parquet_info)


fakesnow_copy._inserts = _inserts

routes = [Route(QUERY_PATH, query_request, methods=["POST"]) if getattr(r, "path", None) == QUERY_PATH else r
          for r in fakesnow_server.routes]
app = Starlette(debug=True, routes=routes)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
