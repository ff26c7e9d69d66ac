"""Peer (a): dlt's rest_api source, as a dlt user would write it for getRefDomains (bench/README.md).

PEER_REQUESTS_PER_SECOND, when set, spaces its requests at that rate (a requests Session that
waits before each request), as a user on a Serpstat plan with a rate limit would have to."""

import os
import sys
import threading
import time

import dlt
import requests
from dlt.sources.rest_api import rest_api_source


class PacedSession(requests.Session):
    """Requests at most `rate` a second, evenly spaced."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.interval, self.next_at, self.lock = 1.0 / rate, 0.0, threading.Lock()

    def send(self, *args, **kwargs):  # type: ignore[override]  # dlt's RESTClient sends prepared requests
        with self.lock:
            now = time.monotonic()
            wait, self.next_at = self.next_at - now, max(now, self.next_at) + self.interval
        if wait > 0:
            time.sleep(wait)
        return super().send(*args, **kwargs)


def main() -> None:
    url, token, db_path, *domains = sys.argv[1:]
    base, path = url.rsplit("/", 1)
    client: dict = {
        "base_url": base + "/",
        "auth": {"type": "api_key", "name": "token", "api_key": token, "location": "query"},
    }
    rate = os.environ.get("PEER_REQUESTS_PER_SECOND")
    if rate:
        client["session"] = PacedSession(float(rate))
    source = rest_api_source({
        "client": client,
        "resources": [
            {
                "name": f"ref_domains_{i}",
                "table_name": "ref_domains",
                "endpoint": {
                    "path": path,
                    "method": "POST",
                    "json": {"id": 1, "method": "SerpstatBacklinksProcedure.getRefDomains",
                             "params": {"query": domain, "searchType": "domain_with_subdomains",
                                        "page": 1, "size": 1000}},
                    "paginator": {"type": "page_number", "base_page": 1, "page_body_path": "params.page",
                                  "total_path": "result.summary_info.total"},
                    "data_selector": "result.data",
                },
            }
            for i, domain in enumerate(domains)
        ],
    })
    pipeline = dlt.pipeline("peer_rest_api", destination=dlt.destinations.duckdb(db_path), dataset_name="peer")
    pipeline.run(source)
    with pipeline.sql_client() as sql:
        print(sql.execute_sql("SELECT count(*) FROM ref_domains")[0][0])


if __name__ == "__main__":
    main()
