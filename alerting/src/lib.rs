//! `strata-alerting` will own alert rules written as SQL, their schedule, the alert state
//! machine (pending / firing / resolved), grouping, dedup, silences, inhibition,
//! escalation, and the notifiers (SMTP via lettre, webhooks and PagerDuty via reqwest).
//!
//! It is an empty skeleton until its issue ("Alerting: rules as SQL …") is taken: it
//! will depend on `strata-sql` only through a query trait and on `strata-catalog` for
//! rule and channel definitions, never on the engine directly.
