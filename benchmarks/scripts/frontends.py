"""Query frontends side by side on one running Strata: the same SQL through Arrow Flight
SQL (ADBC's Go driver), the PostgreSQL wire (psycopg 3) and the HTTP API (JSON).

    python benchmarks/scripts/frontends.py HTTP_ADDR FLIGHT_ADDR PG_ADDR [--hosts 100] [--points 10000]

Writes `hosts x points` rows of `cpu` (3 float fields) into database `bench`, then times
(median and p95 of 20 runs after a warm-up) a full scan and a small time-bucketed
aggregate per frontend. Needs the test virtualenv (scripts/test.sh installs it).
"""

import argparse
import json
import statistics
import time
import urllib.parse
import urllib.request

import adbc_driver_flightsql.dbapi as flightsql
from adbc_driver_flightsql import DatabaseOptions
import psycopg


def write(http: str, hosts: int, points: int) -> int:
    now = int(time.time()) - points - 60
    for h in range(hosts):
        lines = "".join(
            f"cpu,host=h{h},pool=p{h % 10} usage_user={(i * 7 + h) % 100}.5,"
            f"usage_system={(i * 3 + h) % 50}.25,usage_idle={(i + h) % 90}.0 {now + i}\n"
            for i in range(points)
        )
        req = urllib.request.Request(
            f"http://{http}/api/v3/write_lp?db=bench&precision=second", data=lines.encode()
        )
        urllib.request.urlopen(req).read()
    return now


def timed(run, n=20):
    run()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        rows = run()
        samples.append(time.perf_counter() - t)
    samples.sort()
    return statistics.median(samples) * 1000, samples[int(len(samples) * 0.95) - 1] * 1000, rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("http")
    ap.add_argument("flight")
    ap.add_argument("pg")
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--points", type=int, default=10000)
    a = ap.parse_args()
    start = write(a.http, a.hosts, a.points)
    scan = "SELECT host, time, usage_user, usage_system, usage_idle FROM cpu"
    agg = (
        "SELECT date_bin(interval '1 minute', time) AS minute, pool, avg(usage_user) AS u "
        f"FROM cpu WHERE time >= to_timestamp({start + a.points - 600}) GROUP BY 1, 2 ORDER BY 1, 2"
    )
    fl = flightsql.connect(
        f"grpc://{a.flight}",
        db_kwargs={DatabaseOptions.RPC_CALL_HEADER_PREFIX.value + "database": "bench"},
        autocommit=True,
    )
    host, port = a.pg.rsplit(":", 1)
    pg = psycopg.connect(host=host, port=int(port), dbname="bench", user="bench", autocommit=True)

    def flight(sql):
        def run():
            with fl.cursor() as c:
                c.execute(sql)
                return c.fetch_arrow_table().num_rows
        return run

    def postgres(sql, binary):
        def run():
            with pg.cursor(binary=binary) as c:
                c.execute(sql)
                return len(c.fetchall())
        return run

    def http(sql):
        def run():
            q = urllib.parse.urlencode({"db": "bench", "q": sql, "format": "json"})
            return len(json.loads(urllib.request.urlopen(f"http://{a.http}/api/v3/query_sql?{q}").read()))
        return run

    print(f"| query | frontend | rows | median ms | p95 ms |")
    print(f"|---|---|---|---|---|")
    for name, sql in [("full scan", scan), ("1-minute avg by pool, last 10 min", agg)]:
        for fe, run in [
            ("Flight SQL (ADBC)", flight(sql)),
            ("PostgreSQL text (psycopg)", postgres(sql, False)),
            ("PostgreSQL binary (psycopg)", postgres(sql, True)),
            ("HTTP JSON", http(sql)),
        ]:
            med, p95, rows = timed(run, 5 if sql == scan else 20)
            print(f"| {name} | {fe} | {rows} | {med:.1f} | {p95:.1f} |")


if __name__ == "__main__":
    main()
