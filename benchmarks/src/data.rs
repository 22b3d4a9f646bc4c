//! Deterministic fleet-like data: `hosts` hosts in pools, one point per host per second.

/// The CPU usage a host reports at step `i` (a slow wave plus host-specific noise, so
/// compression sees realistic, not constant, values).
pub fn usage(h: u64, i: u64) -> f64 {
    let wave = ((i as f64 / 300.0) + h as f64).sin() * 20.0 + 50.0;
    let noise = ((h * 7919 + i * 104_729) % 1000) as f64 / 100.0;
    ((wave + noise) * 100.0).round() / 100.0
}

/// Line protocol for steps `[from, to)` of `hosts` hosts starting at `base_ns`.
/// Each point has 2 tags (host, pool) and 3 fields (usage f64, system f64, procs i64).
pub fn cpu_lines(hosts: u64, from: u64, to: u64, base_ns: i64) -> String {
    let mut s = String::with_capacity(((to - from) * hosts * 90) as usize);
    for i in from..to {
        let t = base_ns + i as i64 * 1_000_000_000;
        for h in 0..hosts {
            let u = usage(h, i);
            s.push_str(&format!(
                "cpu,host=host-{h:05},pool=pool-{:03} usage={u},system={},procs={}i {t}\n",
                h / 100,
                (u / 4.0 * 100.0).round() / 100.0,
                200 + (h + i / 60) % 50
            ));
        }
    }
    s
}
