"""psycopg 3 (extended protocol, server-side parameters) against a running Strata,
driven by tests/e2e/pg.rs:  python pg_clients.py PG_ADDR START_NS

Database `fleet` holds `cpu` (see flight_clients.py for the data). Exits non-zero with
the reason on any failure.
"""

import sys
from datetime import datetime, timezone

import psycopg


def main() -> None:
    host, port = sys.argv[1].rsplit(":", 1)
    start = int(sys.argv[2])
    t0 = datetime.fromtimestamp(start // 1_000_000_000, tz=timezone.utc)
    with psycopg.connect(host=host, port=int(port), dbname="fleet", user="grafana") as conn:
        assert conn.info.server_version >= 150000, conn.info.server_version
        # SET is echoed with ParameterStatus, which psycopg tracks.
        conn.execute("SET application_name = 'grafana'")
        assert conn.info.parameter_status("application_name") == "grafana", conn.info.parameter_status(
            "application_name"
        )
        conn.rollback()
        with conn.cursor() as cur:
            # What Grafana's PostgreSQL data source sends for $__timeGroup(time, '5s').
            cur.execute(
                'SELECT floor(extract(epoch from time)/5)*5 AS "time", host, avg(usage) AS usage '
                "FROM cpu WHERE time >= %s AND time <= %s GROUP BY 1, 2 ORDER BY 2, 1",
                (t0.replace(tzinfo=None), t0.replace(tzinfo=None, second=t0.second + 9)),
            )
            rows = cur.fetchall()
            got = [(r[1], r[2]) for r in rows]
            assert got == [("a", 2.0), ("a", 7.0), ("b", 12.0), ("b", 17.0)], got
            assert rows[0][0] == start // 1_000_000_000, rows[0]

            cur.execute("SELECT host, max(time) AS t, count(*) AS n FROM cpu WHERE host = %s GROUP BY host", ("b",))
            host, t, n = cur.fetchone()
            assert (host, n) == ("b", 10), (host, n)
            assert isinstance(t, datetime), type(t)
            want = datetime.fromtimestamp(start // 1_000_000_000 + 9, tz=timezone.utc).replace(tzinfo=None)
            assert t == want, (t, want)

            # A failed statement does not drop the connection.
            try:
                cur.execute("SELECT * FROM no_such_table")
                raise AssertionError("an unknown table must fail")
            except psycopg.errors.UndefinedTable:
                pass
            conn.rollback()
            cur.execute("SELECT count(*) FROM cpu")
            assert cur.fetchone() == (20,)
    print("psycopg ok")


if __name__ == "__main__":
    main()
