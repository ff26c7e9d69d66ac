"""Peer (a): dlt's rest_api source, as a dlt user would write it for getRefDomains (bench/README.md)."""

import sys

import dlt
from dlt.sources.rest_api import rest_api_source


def main() -> None:
    url, token, db_path, *domains = sys.argv[1:]
    base, path = url.rsplit("/", 1)
    source = rest_api_source({
        "client": {
            "base_url": base + "/",
            "auth": {"type": "api_key", "name": "token", "api_key": token, "location": "query"},
        },
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
    with pipeline.sql_client() as client:
        print(client.execute_sql("SELECT count(*) FROM ref_domains")[0][0])


if __name__ == "__main__":
    main()
