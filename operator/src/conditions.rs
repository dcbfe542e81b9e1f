//! Status conditions in the Kubernetes convention: one per type, `lastTransitionTime` moving only
//! when the status flips, each stamped with the generation it describes.

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use crate::crd::Condition;

/// Conditions every resource carries.
pub const READY: &str = "Ready";
/// The operator is still bringing the resource to its spec.
pub const PROGRESSING: &str = "Progressing";
/// Something needs a human.
pub const DEGRADED: &str = "Degraded";
/// A member's nodes are in the chain's registry as the spec asks.
pub const ADMITTED: &str = "Admitted";

/// Sets condition `type_` in `conditions`.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    // An empty message is not sent at all, and the CRD schema requires one: say the reason.
    let message = Some(message.into()).filter(|message| !message.is_empty()).unwrap_or_else(|| reason.to_owned());
    match conditions.iter_mut().find(|condition| condition.type_ == type_) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = Time(Timestamp::now());
            }
            existing.status = status;
            existing.reason = reason.to_owned();
            existing.message = message;
            existing.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message,
            observed_generation: generation,
            last_transition_time: Time(Timestamp::now()),
        }),
    }
}

/// Whether condition `type_` is True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions.iter().any(|condition| condition.type_ == type_ && condition.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let mut conditions = Vec::new();
        set(&mut conditions, READY, false, "Starting", "nodes starting", Some(1));
        let long_ago = Time(Timestamp::UNIX_EPOCH);
        conditions[0].last_transition_time = long_ago.clone();
        set(&mut conditions, READY, false, "Syncing", "nodes syncing", Some(2));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, long_ago);
        assert_eq!((conditions[0].reason.as_str(), conditions[0].observed_generation), ("Syncing", Some(2)));
        set(&mut conditions, READY, true, "Running", "all ready", Some(2));
        assert!(is_true(&conditions, READY));
        assert_ne!(conditions[0].last_transition_time, long_ago);
    }
}
