//! Separation of duties between a reviewer and a requester, as a pure decision over the
//! accounts' lineage (who created whom, who confirmed whom) and recent admin changes.
//!
//! The rule, in both directions and through chains of creation:
//! - nobody's review counts on a request by someone they created, directly or through accounts
//!   they created (A creates admin B, B creates C: A does not judge C) — except the standalone
//!   owner, who is the installation and created everyone;
//! - nobody's review counts on a request by someone who created them, directly or through a
//!   chain (A creates admin B, B creates approver C: C does not judge A), unless the reviewer's
//!   account was **confirmed independently of the requester**: by a second admin who is not the
//!   requester and is not themselves an unconfirmed creation of the requester, or — in a
//!   one-admin installation — by its creator after a 24-hour delay that raised an alarm;
//! - nobody judges someone whose roles or groups they changed in the last 24 hours, or who
//!   changed theirs.
//!
//! An admin who mints approvers therefore never gets approvals from them for themselves.

use std::collections::HashMap;

/// How long a role or group change bars the two people from judging each other.
pub const CHANGE_BAR_SECS: i64 = 24 * 3600;
/// How long a one-admin installation waits before the creator may confirm an account alone.
pub const SINGLE_ADMIN_CONFIRM_DELAY_SECS: i64 = 24 * 3600;
/// Longest chain followed (creation depth); deeper lineage is refused rather than guessed.
pub const MAX_CHAIN: usize = 64;

/// How an account's confirmation was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmedVia {
    /// A second admin (not the creator) confirmed it and handed out its enrolment code.
    SecondAdmin,
    /// The only admin confirmed their own creation after the delay (an alarm was raised).
    Delay,
}

impl ConfirmedVia {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfirmedVia::SecondAdmin => "second_admin",
            ConfirmedVia::Delay => "delay",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "second_admin" => Some(ConfirmedVia::SecondAdmin),
            "delay" => Some(ConfirmedVia::Delay),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    pub by: String,
    pub via: ConfirmedVia,
}

/// What the decision knows about one account (rows already authenticated by the caller).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub created_by: Option<String>,
    pub confirmation: Option<Confirmation>,
}

/// The accounts a decision may follow, by id.
pub type Lineage = HashMap<String, Account>;

/// Why a review does not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bar {
    /// The reviewer created the requester; `chain` runs from the reviewer down to the requester.
    Created { chain: Vec<String> },
    /// The requester created the reviewer (and no independent admin confirmed the reviewer);
    /// `chain` runs from the requester down to the reviewer.
    CreatedBy { chain: Vec<String> },
    /// The lineage is deeper than [`MAX_CHAIN`] or names an account that is not there.
    Unknown,
}

/// Ids from `id`'s creator upwards (nearest first); `Err` when broken or too deep.
fn ancestors(lineage: &Lineage, id: &str) -> Result<Vec<String>, ()> {
    let mut out = Vec::new();
    let mut at = lineage.get(id).ok_or(())?;
    while let Some(parent) = &at.created_by {
        if out.len() >= MAX_CHAIN || out.contains(parent) || parent == id {
            return Err(());
        }
        out.push(parent.clone());
        at = lineage.get(parent).ok_or(())?;
    }
    Ok(out)
}

/// Names along the chain from `top` down to `bottom`, given `bottom`'s ancestors.
fn chain_names(lineage: &Lineage, bottom: &str, ancestors: &[String], top: &str) -> Vec<String> {
    let name = |id: &str| lineage.get(id).map(|a| a.name.clone()).unwrap_or_else(|| id.to_string());
    let upto = ancestors.iter().position(|a| a == top).unwrap_or(0);
    let mut chain: Vec<String> = ancestors[..=upto].iter().rev().map(|id| name(id)).collect();
    chain.push(name(bottom));
    chain
}

/// Whether `x` stands independently of `q`: not `q`, and either not created by `q` (through
/// any chain) or confirmed by someone who is themselves independent of `q` (or by the delay).
fn independent_of(lineage: &Lineage, x: &str, q: &str, depth: usize) -> bool {
    if x == q || depth > MAX_CHAIN {
        return false;
    }
    let Ok(up) = ancestors(lineage, x) else { return false };
    if !up.iter().any(|a| a == q) {
        return true;
    }
    match lineage.get(x).and_then(|a| a.confirmation.as_ref()) {
        Some(Confirmation { via: ConfirmedVia::Delay, .. }) => true,
        Some(Confirmation { by, via: ConfirmedVia::SecondAdmin }) => independent_of(lineage, by, q, depth + 1),
        None => false,
    }
}

/// Whether `reviewer`'s review may count on `requester`'s request, by lineage alone.
/// `standalone_owner` is exempt from the downward bar (they created everyone).
pub fn lineage_bar(lineage: &Lineage, reviewer: &str, requester: &str, standalone_owner: Option<&str>) -> Option<Bar> {
    let (Ok(above_requester), Ok(above_reviewer)) = (ancestors(lineage, requester), ancestors(lineage, reviewer))
    else {
        return Some(Bar::Unknown);
    };
    if above_requester.iter().any(|a| a == reviewer) && standalone_owner != Some(reviewer) {
        return Some(Bar::Created { chain: chain_names(lineage, requester, &above_requester, reviewer) });
    }
    if above_reviewer.iter().any(|a| a == requester) && !independent_of(lineage, reviewer, requester, 0) {
        return Some(Bar::CreatedBy { chain: chain_names(lineage, reviewer, &above_reviewer, requester) });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (id, creator, confirmation) — names equal ids.
    type Spec<'a> = (&'a str, Option<&'a str>, Option<(&'a str, ConfirmedVia)>);

    fn lineage(spec: &[Spec<'_>]) -> Lineage {
        spec.iter()
            .map(|(id, by, conf)| {
                (
                    id.to_string(),
                    Account {
                        name: id.to_string(),
                        created_by: by.map(str::to_string),
                        confirmation: conf.map(|(by, via)| Confirmation { by: by.to_string(), via }),
                    },
                )
            })
            .collect()
    }

    use ConfirmedVia::{Delay, SecondAdmin};

    #[test]
    fn lineage_bars_in_both_directions_through_chains() {
        // root creates ada (admin) and ben (admin, confirmed by ada); ada creates puppet C and
        // admin B; B creates C2; ben creates dave, confirmed by ada; eve created by ada,
        // confirmed by C (ada's unconfirmed puppet); fay created by ada confirmed by delay.
        let l = lineage(&[
            ("root", None, None),
            ("ada", Some("root"), None),
            ("ben", Some("root"), Some(("ada", SecondAdmin))),
            ("c", Some("ada"), None),
            ("b", Some("ada"), None),
            ("c2", Some("b"), None),
            ("dave", Some("ben"), Some(("ada", SecondAdmin))),
            ("eve", Some("ada"), Some(("c", SecondAdmin))),
            ("fay", Some("ada"), Some(("ada", Delay))),
            ("gus", Some("ada"), Some(("ben", SecondAdmin))),
            ("hal", Some("b"), Some(("b", SecondAdmin))),
        ]);
        let created = |chain: &[&str]| Some(Bar::Created { chain: chain.iter().map(|s| s.to_string()).collect() });
        let created_by = |chain: &[&str]| Some(Bar::CreatedBy { chain: chain.iter().map(|s| s.to_string()).collect() });
        // (reviewer, requester, owner, expected)
        let cases: &[(&str, &str, Option<&str>, Option<Bar>)] = &[
            ("c", "ada", None, created_by(&["ada", "c"])),
            ("c2", "ada", None, created_by(&["ada", "b", "c2"])),
            ("ada", "c", None, created(&["ada", "c"])),
            ("ada", "c2", None, created(&["ada", "b", "c2"])),
            ("root", "c2", None, created(&["root", "ada", "b", "c2"])),
            ("root", "c2", Some("root"), None),
            // The owner exemption is the owner's only: ada is not the owner.
            ("ada", "c2", Some("root"), created(&["ada", "b", "c2"])),
            // Siblings and strangers judge each other.
            ("c", "b", None, None),
            ("ben", "ada", None, None),
            // Created through ben, whom ada confirmed but did not create: not ada's creation.
            ("dave", "ada", None, None),
            // Confirmed by a second admin independent of ada: counts.
            ("gus", "ada", None, None),
            // Confirmed by ada's own unconfirmed puppet: does not.
            ("eve", "ada", None, created_by(&["ada", "eve"])),
            // Confirmed by the delay in a one-admin installation: counts (alarm raised then).
            ("fay", "ada", None, None),
            // Confirmed by its own creator's account (not a second admin): does not.
            ("hal", "ada", None, created_by(&["ada", "b", "hal"])),
            // The owner's own requests: a creation of the owner needs an independent confirmation.
            ("ada", "root", Some("root"), created_by(&["root", "ada"])),
            ("ben", "root", Some("root"), created_by(&["root", "ben"])),
        ];
        for (reviewer, requester, owner, expected) in cases {
            assert_eq!(&lineage_bar(&l, reviewer, requester, *owner), expected, "{reviewer} judging {requester}");
        }
    }

    #[test]
    fn broken_or_cyclic_lineage_bars() {
        let l =
            lineage(&[("a", Some("b"), None), ("b", Some("a"), None), ("c", Some("gone"), None), ("d", None, None)]);
        assert_eq!(lineage_bar(&l, "d", "a", None), Some(Bar::Unknown));
        assert_eq!(lineage_bar(&l, "c", "d", None), Some(Bar::Unknown));
        assert_eq!(lineage_bar(&l, "x", "d", None), Some(Bar::Unknown));
        let deep: Vec<(String, Option<String>)> =
            (0..=MAX_CHAIN + 1).map(|i| (format!("u{i}"), (i > 0).then(|| format!("u{}", i - 1)))).collect();
        let l: Lineage = deep
            .iter()
            .map(|(id, by)| (id.clone(), Account { name: id.clone(), created_by: by.clone(), confirmation: None }))
            .collect();
        assert_eq!(lineage_bar(&l, "u0", &format!("u{}", MAX_CHAIN + 1), None), Some(Bar::Unknown));
    }
}
