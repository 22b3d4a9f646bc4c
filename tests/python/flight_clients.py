"""Real Flight SQL clients against a running Strata, driven by tests/e2e/clients.rs.

    python flight_clients.py adbc      FLIGHT_ADDR START_NS
    python flight_clients.py influxdb3 HTTP_ADDR   START_NS

Database `fleet` holds `cpu` with hosts a and b, ten points one second apart from
START_NS: usage = i for a and 10 + i for b (i = 0..9). Each client runs a time-bucketed
aggregate and checks the values; any failure exits non-zero with the reason.
"""

import sys
from datetime import datetime, timezone


def rfc3339(ns: int) -> str:
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def bucket_query(start: int) -> str:
    # What Grafana's FlightSQL plugin sends after expanding $__dateBin and $__timeFilter.
    return (
        "SELECT date_bin(interval '5 second', time, timestamp '1970-01-01T00:00:00Z') AS time, "
        "host, avg(usage) AS usage FROM cpu "
        f"WHERE time >= '{rfc3339(start)}' AND time <= '{rfc3339(start + 9_000_000_000)}' "
        "GROUP BY 1, 2 ORDER BY 2, 1"
    )


def check_buckets(table, start: int) -> None:
    rows = table.to_pylist()
    got = [(r["host"], r["usage"]) for r in rows]
    want = [("a", 2.0), ("a", 7.0), ("b", 12.0), ("b", 17.0)]
    assert got == want, f"buckets: got {got}, want {want}"
    times = [r["time"] for r in rows]
    assert times[0].timestamp() * 1e9 == start, f"first bucket at {times[0]}, want {start} ns"


def adbc(addr: str, start: int) -> None:
    import adbc_driver_flightsql.dbapi as flightsql
    from adbc_driver_flightsql import DatabaseOptions

    kwargs = {
        "username": "grafana",
        "password": "secret",
        DatabaseOptions.RPC_CALL_HEADER_PREFIX.value + "database": "fleet",
    }
    with flightsql.connect(f"grpc://{addr}", db_kwargs=kwargs) as conn:
        info = conn.adbc_get_info()
        assert info["vendor_name"] == "Strata", info

        with conn.cursor() as cur:
            cur.execute(bucket_query(start))
            table = cur.fetch_arrow_table()
            assert str(table.schema.field("host").type) == "string", table.schema
            check_buckets(table, start)

            # A bound parameter (the DB-API prepares and binds).
            cur.execute("SELECT avg(usage) AS avg, count(*) AS n FROM cpu WHERE host = $1", ("b",))
            row = cur.fetchone()
            assert row == (14.5, 10), row

            cur.execute("SELECT 1 AS one")
            assert cur.fetchone() == (1,)

            # Errors arrive as exceptions and the connection stays usable.
            try:
                cur.execute("SELECT * FROM no_such_table")
                raise AssertionError("an unknown table must fail")
            except flightsql.Error as e:
                assert "no_such_table" in str(e), e
            cur.execute("SELECT count(*) FROM cpu")
            assert cur.fetchone() == (20,)

        # Metadata: GetCatalogs, GetDbSchemas, GetTables with schemas.
        objects = conn.adbc_get_objects(depth="all", catalog_filter="fleet").read_all().to_pylist()
        assert [c["catalog_name"] for c in objects] == ["fleet"], objects
        schemas = {s["db_schema_name"]: s for s in objects[0]["catalog_db_schemas"]}
        assert set(schemas) >= {"public", "system", "information_schema"}, schemas.keys()
        tables = {t["table_name"]: t for t in schemas["public"]["db_schema_tables"]}
        assert set(tables) == {"cpu"}, tables.keys()
        columns = {c["column_name"] for c in tables["cpu"]["table_columns"]}
        assert columns == {"host", "time", "usage", "cores"}, columns

        schema = conn.adbc_get_table_schema("cpu", catalog_filter="fleet", db_schema_filter="public")
        assert str(schema.field("host").type) == "string", schema
        assert str(schema.field("time").type) == "timestamp[ns]", schema
        assert conn.adbc_get_table_types() == ["SYSTEM TABLE", "TABLE", "VIEW"], conn.adbc_get_table_types()
    print("adbc ok")


def influxdb3(addr: str, start: int) -> None:
    from influxdb_client_3 import InfluxDBClient3

    # One address for writes (HTTP) and queries (gRPC on the same port).
    with InfluxDBClient3(host=f"http://{addr}", token="tok", database="fleet") as client:
        table = client.query(bucket_query(start), language="sql")
        check_buckets(table, start)
        client.write(record=f"cpu,host=c usage=99.5,cores=2i {start}", write_precision="ns")
        table = client.query("SELECT host, usage FROM cpu WHERE host = 'c'", language="sql")
        assert table.to_pylist() == [{"host": "c", "usage": 99.5}], table.to_pylist()
    print("influxdb3 ok")


def main() -> None:
    client, addr, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
    {"adbc": adbc, "influxdb3": influxdb3}[client](addr, start)


if __name__ == "__main__":
    main()
