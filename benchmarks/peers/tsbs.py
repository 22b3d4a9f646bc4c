"""The TSBS query runner of `strata-benchmarks tsbs`: times every query type on Strata
(Arrow Flight SQL through the ADBC driver, and again in two plain Flight RPCs a query, see
`StrataFlight`) and on the peers (DuckDB and chDB in process
over the Parquet export, InfluxDB 1.x over HTTP with InfluxQL), and checks every Strata
answer against DuckDB's.

    python tsbs.py SPEC.json RESULTS.json

SPEC (written by the Rust harness): flight address, database, parquet path, engines,
influx URL, and `types`: [{name, description, instances: [{sql, clickhouse, influxql}]}].
"""

import json
import math
import sys
import time
import urllib.parse
import urllib.request
import warnings

# ADBC warns that Flight SQL connections cannot turn autocommit off; queries only here.
warnings.filterwarnings("ignore", message="Cannot disable autocommit")


class Strata:
    def __init__(self, spec):
        import adbc_driver_flightsql.dbapi as flightsql
        from adbc_driver_flightsql import DatabaseOptions

        kwargs = {DatabaseOptions.RPC_CALL_HEADER_PREFIX.value + "database": spec["database"]}
        self.conn = flightsql.connect(f"grpc://{spec['flight']}", db_kwargs=kwargs)

    def run(self, q):
        with self.conn.cursor() as cur:
            cur.execute(q["sql"])
            return cur.fetch_arrow_table()


def _field(tag, data):
    """One length-delimited protobuf field."""
    n, out = len(data), bytearray([tag])
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out) + data


def statement_query(sql):
    """A Flight SQL CommandStatementQuery packed in a protobuf Any."""
    command = _field(0x0A, sql.encode())
    url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return _field(0x0A, url) + _field(0x12, command)


class StrataFlight:
    """Strata through Arrow Flight SQL in two RPCs a query: GetFlightInfo of the statement,
    then DoGet of its ticket, as a Flight SQL client that does not prepare statements sends
    them. (ADBC's DBAPI cursor prepares every new statement and closes it afterwards: four
    RPCs, and the ADBC driver's own Go runtime, between the runner and the same server.)"""

    def __init__(self, spec):
        import pyarrow.flight as flight

        self.flight = flight
        self.client = flight.FlightClient(f"grpc://{spec['flight']}")
        self.options = flight.FlightCallOptions(headers=[(b"database", spec["database"].encode())])

    def run(self, q):
        import pyarrow as pa

        descriptor = self.flight.FlightDescriptor.for_command(statement_query(q["sql"]))
        info = self.client.get_flight_info(descriptor, self.options)
        tables = [self.client.do_get(e.ticket, self.options).read_all() for e in info.endpoints]
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


class DuckDB:
    def __init__(self, spec):
        import duckdb

        self.con = duckdb.connect()
        path = spec["parquet"].replace("'", "''")
        self.con.execute(f"CREATE VIEW cpu AS SELECT * FROM read_parquet('{path}')")

    def run(self, q):
        return self.con.execute(q["sql"]).to_arrow_table()


class ChDB:
    def __init__(self, spec):
        import chdb

        self.chdb = chdb
        self.source = "file('{}', Parquet)".format(spec["parquet"].replace("'", "\\'"))

    def run(self, q):
        sql = q["clickhouse"].replace("FROM cpu", f"FROM {self.source}")
        return self.chdb.query(sql, "ArrowTable")


class InfluxDB:
    def __init__(self, spec):
        self.url = spec["influx"] + "/query"
        self.db = spec["database"]

    def run(self, q):
        params = urllib.parse.urlencode({"db": self.db, "q": q["influxql"], "epoch": "ns"})
        with urllib.request.urlopen(f"{self.url}?{params}", timeout=600) as r:
            body = json.load(r)
        rows = 0
        for result in body.get("results", []):
            if "error" in result:
                raise RuntimeError(result["error"])
            for series in result.get("series", []):
                rows += len(series.get("values", []))
        return rows


ENGINES = {
    "strata": Strata,
    "strata-flight": StrataFlight,
    "duckdb": DuckDB,
    "chdb": ChDB,
    "influxdb": InfluxDB,
}


def row_count(result):
    return result if isinstance(result, int) else result.num_rows


def normalized(table):
    """Rows as sorted tuples over the sorted column names; times as integer ns."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = sorted(table.column_names)
    columns = []
    for name in names:
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            col = pc.cast(pc.cast(col, pa.timestamp("ns", col.type.tz)), pa.int64())
        elif pa.types.is_dictionary(col.type):
            col = pc.cast(col, col.type.value_type)
        columns.append(col.to_pylist())
    rows = list(zip(*columns)) if columns else []
    rows.sort(key=lambda r: tuple((v is None, v if not isinstance(v, float) else round(v, 6)) for v in r))
    return names, rows


def same_value(a, b):
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def compare(name, i, sql, got, want):
    """None when equal, else what differs."""
    gn, grows = normalized(got)
    wn, wrows = normalized(want)
    where = f"{name} #{i} ({sql})"
    if gn != wn:
        return f"{where}: columns {gn} vs DuckDB {wn}"
    if len(grows) != len(wrows):
        return f"{where}: {len(grows)} rows vs DuckDB {len(wrows)}"
    for g, w in zip(grows, wrows):
        if not all(same_value(a, b) for a, b in zip(g, w)):
            return f"{where}: row {g} vs DuckDB {w}"
    return None


def percentile(sorted_ms, p):
    k = max(0, min(len(sorted_ms) - 1, math.ceil(p * len(sorted_ms)) - 1))
    return sorted_ms[k]


def main():
    spec = json.load(open(sys.argv[1]))
    engines = {}
    for name in spec["engines"]:
        engines[name] = ENGINES[name](spec)
    out = {"types": [], "mismatches": []}
    for qt in spec["types"]:
        name = qt["name"]
        times = {e: [] for e in engines}
        rows = {e: 0 for e in engines}
        errors = {}
        checked = 0
        # One engine at a time, as TSBS runs one system at a time: a warm-up run of the
        # first instance, untimed, then every instance timed. Interleaving the engines
        # would time each query of a server right after the in-process peers have left
        # its threads idle, and on a virtual machine waking an idle CPU costs
        # milliseconds (see benchmarks/README.md).
        # DuckDB runs first and its answers wait for Strata's, each compared as it comes
        # and then dropped. (Holding Strata's answers instead left the ADBC driver's Go
        # runtime reclaiming them while the next query type was timed: `lastpoint` took
        # 10 ms after `high-cpu-all`'s ten 437,000-row answers, 6.5 ms on its own.)
        expected = []
        order = sorted(engines, key=lambda e: e != "duckdb")
        for e in order:
            engine = engines[e]
            try:
                engine.run(qt["instances"][0])
                for i, q in enumerate(qt["instances"]):
                    t = time.perf_counter()
                    result = engine.run(q)
                    times[e].append((time.perf_counter() - t) * 1000)
                    rows[e] = row_count(result)
                    if e == "duckdb":
                        expected.append(result)
                    elif e.startswith("strata") and i < len(expected):
                        diff = compare(f"{name} on {e}", i, q["sql"], result, expected[i])
                        if diff:
                            out["mismatches"].append(diff)
                        elif e == "strata":
                            checked += 1
                    del result
            except Exception as err:  # reported per engine, the others go on
                errors[e] = f"{type(err).__name__}: {err}"
        del expected
        figures = {}
        for e in engines:
            ms = sorted(times[e])
            figures[e] = {
                "median_ms": ms[len(ms) // 2] if ms else 0.0,
                "p95_ms": percentile(ms, 0.95) if ms else 0.0,
                "min_ms": ms[0] if ms else 0.0,
                "rows": rows[e],
                "error": errors.get(e),
            }
        line = "  ".join(
            f"{e} {f['median_ms']:.1f} ms" if not f["error"] else f"{e} ERROR" for e, f in figures.items()
        )
        print(f"{name:24} {line}", file=sys.stderr, flush=True)
        out["types"].append(
            {"name": name, "description": qt["description"], "engines": figures, "checked": checked}
        )
    json.dump(out, open(sys.argv[2], "w"), indent=2)


if __name__ == "__main__":
    main()
