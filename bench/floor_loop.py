"""Floor (b): a bare loop that POSTs and JSON-decodes every page, nothing else (bench/README.md)."""

import json
import math
import sys

import requests


def main() -> None:
    url, token, *targets = sys.argv[1:]
    session = requests.Session()
    rows = 0
    for item in targets:
        domain, total = item.split("=")
        for page in range(1, math.ceil(int(total) / 1000) + 1):
            answer = session.post(url, params={"token": token}, json={
                "id": page, "method": "SerpstatBacklinksProcedure.getRefDomains",
                "params": {"query": domain, "searchType": "domain_with_subdomains", "page": page, "size": 1000,
                           "sort": "domain_from", "order": "asc"}})
            rows += len(json.loads(answer.content)["result"]["data"])
    print(rows)


if __name__ == "__main__":
    main()
