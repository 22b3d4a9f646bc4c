//! Scrapes write through one coalescing writer. A scrape touches hundreds of tables with
//! a few rows each, and the engine's cost is per (write, table); so while one write is
//! in the WAL, the scrapes that finish meanwhile queue up and go as one write (up to
//! [`MAX_POINTS`]). Each scrape still learns which of its own samples were refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use strata_engine::{Engine, Point, RejectedPoint, WriteOptions};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Most points in one coalesced write.
const MAX_POINTS: usize = 200_000;

/// Accepted count and refused samples (numbered as in the scrape), or why nothing was
/// stored.
pub(super) type Outcome = Result<(usize, Vec<RejectedPoint>), String>;

struct Pending {
    db: String,
    points: Vec<Point>,
    reply: oneshot::Sender<Outcome>,
}

pub(super) struct Coalescer {
    tx: mpsc::Sender<Pending>,
}

impl Coalescer {
    pub(super) fn start(engine: Arc<Engine>) -> (Arc<Self>, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4096);
        (Arc::new(Self { tx }), tokio::spawn(run(engine, rx)))
    }

    pub(super) async fn write(&self, db: &str, points: Vec<Point>) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            db: db.to_string(),
            points,
            reply,
        };
        if self.tx.send(pending).await.is_err() {
            return Err("the scrape writer has stopped".into());
        }
        answer
            .await
            .unwrap_or_else(|_| Err("the scrape writer has stopped".into()))
    }
}

async fn run(engine: Arc<Engine>, mut rx: mpsc::Receiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let mut n = first.points.len();
        let mut by_db: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
        by_db.entry(first.db.clone()).or_default().push(first);
        // Whatever queued up while the previous write was in the WAL goes along.
        while n < MAX_POINTS {
            let Ok(next) = rx.try_recv() else { break };
            n += next.points.len();
            by_db.entry(next.db.clone()).or_default().push(next);
        }
        for (db, group) in by_db {
            write_group(&engine, &db, group).await;
        }
    }
}

async fn write_group(engine: &Engine, db: &str, group: Vec<Pending>) {
    let mut all = Vec::new();
    let mut original_line = Vec::new();
    let mut ranges = Vec::new();
    let mut replies = Vec::new();
    for p in group {
        let start = all.len();
        for mut point in p.points {
            original_line.push(point.line);
            point.line = all.len() + 1;
            all.push(point);
        }
        ranges.push(start..all.len());
        replies.push(p.reply);
    }
    match engine.write(db, all, WriteOptions::default()).await {
        Ok(outcome) => {
            let mut refused: Vec<Vec<RejectedPoint>> = vec![Vec::new(); replies.len()];
            for r in outcome.rejected {
                let idx = r.line.saturating_sub(1);
                if let Some(i) = ranges.iter().position(|range| range.contains(&idx)) {
                    refused[i].push(RejectedPoint {
                        line: original_line[idx],
                        reason: r.reason,
                    });
                }
            }
            for ((reply, range), refused) in replies.into_iter().zip(ranges).zip(refused) {
                let _ = reply.send(Ok((range.len() - refused.len(), refused)));
            }
        }
        Err(e) => {
            let why = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(why.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use strata_engine::clock::SystemClock;
    use strata_engine::{EngineConfig, FieldValue};

    use super::*;

    fn point(table: &str, host: &str, time: i64, line: usize) -> Point {
        Point {
            table: table.into(),
            tags: vec![("host".into(), host.into())].into(),
            fields: vec![("value".into(), FieldValue::F64(1.0))],
            time,
            line,
        }
    }

    #[tokio::test]
    async fn coalesced_scrapes_each_get_their_own_refusals() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (engine, _) = Engine::open(EngineConfig::for_test(dir.path()), Arc::new(SystemClock))
            .await
            .expect("engine");
        let (writer, _task) = Coalescer::start(Arc::clone(&engine));
        let now = {
            use strata_engine::clock::Clock;
            SystemClock.now_ns()
        };
        // Queued together: the second scrape has one point older than the hot
        // retention (refused) at its line 2.
        let a = writer.write("m", vec![point("up", "a", now, 1), point("x", "a", now, 2)]);
        let b = writer.write("m", vec![point("up", "b", now, 1), point("up", "b", 1, 2)]);
        let (a, b) = tokio::join!(a, b);
        assert_eq!(a.expect("a"), (2, vec![]));
        let (accepted, refused) = b.expect("b");
        assert_eq!(accepted, 1);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].line, 2);
        assert!(
            refused[0].reason.contains("retention"),
            "{}",
            refused[0].reason
        );
    }
}
