//! Host metrics from `sysinfo`, as Telegraf names them where it can (so dashboards and
//! habits carry over). Every point has the `host` tag (and the agent's extra tags):
//!
//! | table | tags | fields |
//! |---|---|---|
//! | `cpu` | `cpu` (`cpu-total`, `cpu0`, …) | `usage_percent`, `frequency_mhz` (per core) |
//! | `mem` | | `total`, `available`, `used`, `free`, `used_percent` (bytes) |
//! | `swap` | | `total`, `used`, `free`, `used_percent` |
//! | `disk` | `path`, `device`, `fstype` | `total`, `free`, `used`, `used_percent` |
//! | `diskio` | `path`, `device` | `read_bytes`, `write_bytes` (totals since boot, per mount) |
//! | `net` | `interface` | `bytes_recv`, `bytes_sent`, `packets_recv`, `packets_sent`, `err_in`, `err_out` (totals) |
//! | `system` | | `load1`, `load5`, `load15`, `uptime` (s), `n_cpus`, `processes` |
//!
//! Counters are totals since boot, as Prometheus' node_exporter exposes them (rates are
//! a SQL window away), and integers are i64 as Telegraf writes them. Unlike Telegraf,
//! `cpu` has only the total usage (sysinfo has no per-mode split) and `diskio` is per
//! mount point.

use std::collections::BTreeMap;

use strata_engine::{FieldValue, Point};
use sysinfo::{
    CpuRefreshKind, Disks, MemoryRefreshKind, Networks, ProcessRefreshKind, ProcessesToUpdate,
    System,
};

pub struct HostCollector {
    system: System,
    disks: Disks,
    networks: Networks,
    tags: Vec<(String, String)>,
}

fn f(name: &str, v: f64) -> (String, FieldValue) {
    (name.to_string(), FieldValue::F64(v))
}

/// Counters and sizes as signed integers, as Telegraf writes them, so a fleet mixing
/// both agents has one column type.
fn u(name: &str, v: u64) -> (String, FieldValue) {
    (
        name.to_string(),
        FieldValue::I64(i64::try_from(v).unwrap_or(i64::MAX)),
    )
}

fn percent(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}

impl HostCollector {
    /// `host` defaults to the machine's host name; `extra` tags go on every point.
    pub fn new(host: Option<String>, extra: &BTreeMap<String, String>) -> Result<Self, String> {
        let system = System::new().map_err(|e| format!("cannot read system information: {e}"))?;
        let disks =
            Disks::new_with_refreshed_list().map_err(|e| format!("cannot list disks: {e}"))?;
        let networks = Networks::new_with_refreshed_list()
            .map_err(|e| format!("cannot list network interfaces: {e}"))?;
        let host = host
            .or_else(|| System::host_name().ok())
            .unwrap_or_else(|| "unknown".into());
        let mut tags = vec![("host".to_string(), host)];
        tags.extend(
            extra
                .iter()
                .filter(|(k, _)| k.as_str() != "host")
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let mut c = Self {
            system,
            disks,
            networks,
            tags,
        };
        // CPU usage is a difference between two readings: take the first one now.
        c.system.refresh_cpu_specifics(CpuRefreshKind::everything());
        Ok(c)
    }

    pub fn host(&self) -> &str {
        &self.tags[0].1
    }

    fn point(
        &self,
        table: &str,
        extra: &[(&str, String)],
        fields: Vec<(String, FieldValue)>,
        time: i64,
    ) -> Point {
        let mut tags = self.tags.clone();
        tags.extend(
            extra
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), v.clone())),
        );
        Point {
            table: table.into(),
            tags: tags
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            fields: fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            time,
            line: 0,
        }
    }

    /// One reading of everything, stamped `time`.
    pub fn collect(&mut self, time: i64) -> Vec<Point> {
        self.system
            .refresh_cpu_specifics(CpuRefreshKind::everything());
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::everything());
        // Only the process list (for the count), not each process' details.
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing(),
        );
        self.disks.refresh(true);
        self.networks.refresh(true);
        let mut out = Vec::new();
        out.push(self.point(
            "cpu",
            &[("cpu", "cpu-total".into())],
            vec![f(
                "usage_percent",
                f64::from(self.system.global_cpu_usage()),
            )],
            time,
        ));
        for (i, cpu) in self.system.cpus().iter().enumerate() {
            out.push(self.point(
                "cpu",
                &[("cpu", format!("cpu{i}"))],
                vec![
                    f("usage_percent", f64::from(cpu.usage())),
                    u("frequency_mhz", cpu.frequency()),
                ],
                time,
            ));
        }
        let s = &self.system;
        let (total, available) = (s.total_memory(), s.available_memory());
        out.push(self.point(
            "mem",
            &[],
            vec![
                u("total", total),
                u("available", available),
                u("used", s.used_memory()),
                u("free", s.free_memory()),
                f(
                    "used_percent",
                    percent(total.saturating_sub(available), total),
                ),
            ],
            time,
        ));
        let (swap_total, swap_used) = (s.total_swap(), s.used_swap());
        out.push(self.point(
            "swap",
            &[],
            vec![
                u("total", swap_total),
                u("used", swap_used),
                u("free", s.free_swap()),
                f("used_percent", percent(swap_used, swap_total)),
            ],
            time,
        ));
        for d in self.disks.iter() {
            let path = d.mount_point().to_string_lossy().into_owned();
            let device = d.name().to_string_lossy().into_owned();
            let (total, free) = (d.total_space(), d.available_space());
            let used = total.saturating_sub(free);
            out.push(self.point(
                "disk",
                &[
                    ("path", path.clone()),
                    ("device", device.clone()),
                    ("fstype", d.file_system().to_string_lossy().into_owned()),
                ],
                vec![
                    u("total", total),
                    u("free", free),
                    u("used", used),
                    f("used_percent", percent(used, total)),
                ],
                time,
            ));
            let io = d.usage();
            out.push(self.point(
                "diskio",
                &[("path", path), ("device", device)],
                vec![
                    u("read_bytes", io.total_read_bytes),
                    u("write_bytes", io.total_written_bytes),
                ],
                time,
            ));
        }
        for (name, n) in self.networks.iter() {
            out.push(self.point(
                "net",
                &[("interface", name.to_string_lossy().into_owned())],
                vec![
                    u("bytes_recv", n.total_received()),
                    u("bytes_sent", n.total_transmitted()),
                    u("packets_recv", n.total_packets_received()),
                    u("packets_sent", n.total_packets_transmitted()),
                    u("err_in", n.total_errors_on_received()),
                    u("err_out", n.total_errors_on_transmitted()),
                ],
                time,
            ));
        }
        let mut fields = Vec::new();
        if let Ok(load) = System::load_average() {
            fields.extend([
                f("load1", load.one),
                f("load5", load.five),
                f("load15", load.fifteen),
            ]);
        }
        if let Ok(up) = System::uptime() {
            fields.push(u("uptime", up));
        }
        fields.push(u("n_cpus", self.system.cpus().len() as u64));
        fields.push(u("processes", self.system.processes().len() as u64));
        out.push(self.point("system", &[], fields, time));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machine() {
        let extra = BTreeMap::from([("pool".to_string(), "p1".to_string())]);
        let mut c = HostCollector::new(Some("test-host".into()), &extra).expect("collector");
        let points = c.collect(42);
        let tables: std::collections::BTreeSet<&str> = points.iter().map(|p| &*p.table).collect();
        for t in ["cpu", "mem", "swap", "system", "net"] {
            assert!(tables.contains(t), "no `{t}` in {tables:?}");
        }
        assert!(points.iter().all(|p| p.time == 42
            && p.tag_pairs()[0] == ("host", "test-host")
            && p.tag_pairs().contains(&("pool", "p1"))));
        let cores = points
            .iter()
            .filter(|p| {
                &*p.table == "cpu"
                    && p.tag_pairs()
                        .iter()
                        .any(|(k, v)| *k == "cpu" && *v != "cpu-total")
            })
            .count();
        assert!(cores >= 1);
        let mem = points.iter().find(|p| &*p.table == "mem").expect("mem");
        assert!(
            matches!(mem.fields[0].1, FieldValue::I64(t) if t > 0),
            "total memory"
        );
    }
}
