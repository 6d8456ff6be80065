//! The ownership mark of a role assignment this project made, in exactly two shapes:
//! - `managed-by: acr-autoattach cluster=<exact cluster id>` (direct mode; a group-mode pair whose member add
//!   failed);
//! - `managed-by: acr-autoattach cluster=<exact cluster id> member-since=<unix seconds>` (group mode's fast path,
//!   written only after the principal's add to the tool's group succeeded: the time is an upper bound of the add
//!   time, so a settle window counted from it ends late, never early).
//!
//! Nothing before, between or after; one space each; the seconds are ASCII digits (at most 12, no sign, no
//! leading zero unless `0`). Anything else is a person's text.

use super::{ArmKind, OWNERSHIP_MARK, ResourceId};

/// The text between the cluster id and the seconds of the second shape.
const MEMBER_SINCE: &str = " member-since=";

/// The group-mode description: the mark, the cluster id and when its principal's membership began.
pub fn member_since_description(cluster: &ResourceId, since_unix: i64) -> String {
    format!(
        "{OWNERSHIP_MARK} cluster={}{MEMBER_SINCE}{since_unix}",
        cluster.as_str()
    )
}

/// The parsed mark: the cluster and, for the second shape, the membership's start.
pub(super) fn parse_mark(description: &str) -> Option<(ResourceId, Option<i64>)> {
    let rest = description
        .strip_prefix(OWNERSHIP_MARK)?
        .strip_prefix(" cluster=")?;
    let (cluster, since) = match rest.split_once(MEMBER_SINCE) {
        Some((cluster, secs)) => (cluster, Some(parse_secs(secs)?)),
        None => (rest, None),
    };
    if cluster.chars().any(char::is_whitespace) {
        return None;
    }
    let id = ResourceId::parse(cluster).ok()?;
    (id.as_str() == cluster && id.is_exact(ArmKind::ManagedCluster)).then_some((id, since))
}

/// Unix seconds as the mark writes them (a non-negative `i64`, canonical decimal).
fn parse_secs(text: &str) -> Option<i64> {
    let canonical = !text.is_empty()
        && text.len() <= 12
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::core::model::ownership_description;

    fn cluster() -> ResourceId {
        ResourceId::parse(
            "/subscriptions/s/resourceGroups/r/providers/Microsoft.ContainerService/managedClusters/a",
        )
        .unwrap()
    }

    #[test]
    fn exactly_two_shapes_parse() {
        let c = cluster();
        assert_eq!(
            parse_mark(&ownership_description(&c)),
            Some((c.clone(), None))
        );
        let d = member_since_description(&c, 1_764_590_000);
        assert_eq!(
            d,
            format!("{OWNERSHIP_MARK} cluster={c} member-since=1764590000")
        );
        assert_eq!(parse_mark(&d), Some((c.clone(), Some(1_764_590_000))));
        assert_eq!(
            parse_mark(&member_since_description(&c, 0)),
            Some((c.clone(), Some(0)))
        );
        for near_miss in [
            format!("{d} "),
            format!("{d}0000000"),
            format!("{OWNERSHIP_MARK} cluster={c} member-since="),
            format!("{OWNERSHIP_MARK} cluster={c} member-since=-5"),
            format!("{OWNERSHIP_MARK} cluster={c} member-since=+5"),
            format!("{OWNERSHIP_MARK} cluster={c} member-since=05"),
            format!("{OWNERSHIP_MARK} cluster={c} member-since=5x"),
            format!("{OWNERSHIP_MARK} cluster={c}  member-since=5"),
            format!("{OWNERSHIP_MARK} cluster={c} member-since=5 member-since=6"),
            format!("{OWNERSHIP_MARK} cluster={c} member_since=5"),
            format!("{OWNERSHIP_MARK} cluster={c} by=alice"),
            format!("{OWNERSHIP_MARK} member-since=5 cluster={c}"),
        ] {
            assert_eq!(parse_mark(&near_miss), None, "{near_miss}");
        }
    }
}
