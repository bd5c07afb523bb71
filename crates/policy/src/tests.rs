use super::*;

fn person(name: &str, roles: &[&str], groups: &[&str]) -> Person {
    Person {
        name: name.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

fn target(name: &str, environment: &str) -> TargetFacts {
    TargetFacts { name: name.into(), environment: environment.into(), tags: vec!["linux".into()], ..Default::default() }
}

fn at(rfc3339: &str) -> Timestamp {
    rfc3339.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The README's worked examples: prod needs two approvals from dbas, each with a security key;
/// staging only in office hours (Berlin), up to 4 hours; never from outside the office network.
const EXAMPLES: &str = r#"
@id("prod-two-keys")
@approvals("2")
@approvers("dbas")
permit (principal in Portcullis::Group::"engineers", action == Portcullis::Action::"request",
        resource in Portcullis::Environment::"prod")
when { context.duration <= duration("2h") };

@id("dbas-approve-prod-with-key")
@step_up("webauthn")
permit (principal in Portcullis::Group::"dbas", action == Portcullis::Action::"approve",
        resource in Portcullis::Environment::"prod");

@id("staging-office-hours")
permit (principal in Portcullis::Group::"engineers", action == Portcullis::Action::"request",
        resource in Portcullis::Environment::"staging")
when {
  context.weekday <= 5 &&
  context.time_of_day >= duration("9h") && context.time_of_day < duration("18h") &&
  context.duration <= duration("4h")
};

@id("approvers-approve-staging")
permit (principal, action == Portcullis::Action::"approve", resource in Portcullis::Environment::"staging")
when { principal.roles.contains("approver") };

@id("office-network-only")
forbid (principal, action == Portcullis::Action::"request", resource)
unless { context.source_ip.isInRange(ip("10.0.0.0/8")) };
"#;

fn request(
    set: &PolicySet,
    user: &Person,
    t: &TargetFacts,
    secs: u64,
    when: &str,
    from: &str,
    tz: &str,
) -> RequestDecision {
    set.decide_request(&RequestQuery {
        user,
        target: t,
        access: Access::Ssh,
        duration_secs: secs,
        source_ip: ip(from),
        at: at(when),
        time_zone: time_zone_named(Some(tz)).unwrap(),
    })
    .unwrap()
}

#[test]
fn default_policies_reproduce_the_fixed_roles() {
    let set = PolicySet::compile(DEFAULT_POLICIES).unwrap();
    let alice = person("alice", &["requester"], &[]);
    let auditor = person("audrey", &["auditor"], &[]);
    let web = target("web", "");
    let now = "2026-11-26T10:00:00Z";

    let ok = request(&set, &alice, &web, 8 * 3600, now, "127.0.0.1", "UTC");
    assert!(ok.allowed, "{ok:?}");
    assert_eq!((ok.approvals, ok.policies.clone()), (1, vec!["requesters-up-to-8h".to_string()]));
    assert!(ok.summary().starts_with("allow"), "{}", ok.summary());

    let long = request(&set, &alice, &web, 9 * 3600, now, "127.0.0.1", "UTC");
    assert!(!long.allowed);
    let why = long.why.unwrap();
    assert!(why.contains("8h") && why.contains("requesters-up-to-8h") && why.contains("9h"), "{why}");

    let not_requester = request(&set, &auditor, &web, 60, now, "127.0.0.1", "UTC");
    assert!(!not_requester.allowed);
    assert!(not_requester.why.unwrap().contains("no policy permits audrey"));

    let approve = |approver: &Person| {
        set.decide_approval(&ApprovalQuery {
            approver,
            requester: &alice,
            target: &web,
            access: Access::Ssh,
            duration_secs: 3600,
            source_ip: ip("::1"),
            at: at(now),
            time_zone: TimeZone::UTC,
        })
        .unwrap()
    };
    let bob = approve(&person("bob", &["approver"], &[]));
    assert!(bob.allowed && !bob.step_up, "{bob:?}");
    assert!(!approve(&auditor).allowed);
}

#[test]
fn worked_examples_decide_by_group_environment_time_and_network() {
    let set = PolicySet::compile(EXAMPLES).unwrap();
    let eng = person("erin", &["requester"], &["engineers"]);
    let outsider = person("olga", &["requester"], &[]);
    let prod = target("db1", "prod");
    let staging = target("web-staging", "staging");
    // Thursday 26 November 2026; Berlin is UTC+1 in November.
    // (who, target, seconds, when, from, time zone, allowed, what the answer mentions)
    type Case<'a> = (&'a Person, &'a TargetFacts, u64, &'a str, &'a str, &'a str, bool, &'a str);
    let cases: &[Case] = &[
        (&eng, &prod, 3600, "2026-11-26T10:00:00Z", "10.1.2.3", "UTC", true, "prod-two-keys"),
        (&eng, &prod, 3 * 3600, "2026-11-26T10:00:00Z", "10.1.2.3", "UTC", false, "2h"),
        (&eng, &prod, 3600, "2026-11-26T10:00:00Z", "192.168.1.5", "UTC", false, "office-network-only"),
        (&outsider, &prod, 3600, "2026-11-26T10:00:00Z", "10.1.2.3", "UTC", false, "no policy permits olga"),
        (&eng, &staging, 3600, "2026-11-26T10:00:00Z", "10.1.2.3", "UTC", true, "staging-office-hours"),
        // 08:30 UTC is 09:30 in Berlin: inside office hours there, outside them in UTC.
        (&eng, &staging, 3600, "2026-11-26T08:30:00Z", "10.1.2.3", "Europe/Berlin", true, "staging-office-hours"),
        (&eng, &staging, 3600, "2026-11-26T08:30:00Z", "10.1.2.3", "UTC", false, "no policy permits erin"),
        (&eng, &staging, 3600, "2026-11-26T17:30:00Z", "10.1.2.3", "Europe/Berlin", false, "no policy"),
        // Saturday.
        (&eng, &staging, 3600, "2026-11-28T10:00:00Z", "10.1.2.3", "UTC", false, "Saturday"),
        // Sunday 23:30 UTC is already Monday 00:30 in Berlin: still outside hours.
        (&eng, &staging, 3600, "2026-11-29T23:30:00Z", "10.1.2.3", "Europe/Berlin", false, "Monday"),
    ];
    for (i, (user, t, secs, when, from, tz, allowed, mention)) in cases.iter().enumerate() {
        let d = request(&set, user, t, *secs, when, from, tz);
        assert_eq!(d.allowed, *allowed, "case {i}: {d:?}");
        let text = if d.allowed { d.policies.join(",") } else { d.why.clone().unwrap_or_default() };
        assert!(text.contains(mention), "case {i}: {text:?} should mention {mention:?}");
    }
    let d = request(&set, &eng, &prod, 3600, "2026-11-26T10:00:00Z", "10.1.2.3", "UTC");
    assert_eq!((d.approvals, d.approver_groups.clone()), (2, vec!["dbas".to_string()]));
    assert_eq!(d.summary(), "allow by \"prod-two-keys\": needs 2 approvals from members of \"dbas\"");

    let approve = |approver: &Person, t: &TargetFacts| {
        set.decide_approval(&ApprovalQuery {
            approver,
            requester: &eng,
            target: t,
            access: Access::Ssh,
            duration_secs: 3600,
            source_ip: ip("10.9.9.9"),
            at: at("2026-11-26T10:00:00Z"),
            time_zone: TimeZone::UTC,
        })
        .unwrap()
    };
    let dba = person("dana", &["approver"], &["dbas"]);
    let plain = person("pete", &["approver"], &[]);
    assert!(approve(&dba, &prod).step_up);
    assert!(approve(&dba, &prod).allowed);
    assert!(!approve(&plain, &prod).allowed);
    let staging_ok = approve(&plain, &staging);
    assert!(staging_ok.allowed && !staging_ok.step_up, "{staging_ok:?}");
}

#[test]
fn the_largest_approvals_wins_and_every_approver_group_applies() {
    let text = r#"
@id("one") @approvals("1") permit (principal, action == Portcullis::Action::"request", resource);
@id("three") @approvals("3") @approvers("sre")
permit (principal, action == Portcullis::Action::"request", resource) when { resource.tags.contains("pci") };
@id("two") @approvals("2") @approvers("security")
permit (principal, action == Portcullis::Action::"request", resource) when { resource.tags.contains("pci") };
"#;
    let set = PolicySet::compile(text).unwrap();
    let u = person("u", &["requester"], &[]);
    let pci =
        TargetFacts { name: "card".into(), environment: "".into(), tags: vec!["pci".into()], ..Default::default() };
    let d = request(&set, &u, &pci, 60, "2026-11-26T10:00:00Z", "10.0.0.1", "UTC");
    assert_eq!(d.approvals, 3);
    assert_eq!(d.policies, vec!["one", "three", "two"]);
    assert_eq!(d.approver_groups, vec!["security", "sre"]);
    let plain = request(&set, &u, &target("web", ""), 60, "2026-11-26T10:00:00Z", "10.0.0.1", "UTC");
    assert_eq!((plain.approvals, plain.approver_groups.len()), (1, 0));
}

/// Each refused text: a fragment of the message and where it points (line, when known).
#[test]
fn bad_policies_are_refused_with_a_place_and_a_reason() {
    let head = "@id(\"p\")\npermit (principal, action == Portcullis::Action::\"request\", resource)\n";
    let cases: &[(&str, String, &str, Option<u32>)] = &[
        ("misspelt attribute", format!("{head}when {{ principal.rolez.contains(\"x\") }};"), "rolez", Some(3)),
        (
            "unknown entity type",
            "@id(\"p\")\npermit (principal in Portcullis::Team::\"x\", action, resource);".into(),
            "Portcullis::Team",
            Some(2),
        ),
        ("wrong type", format!("{head}when {{ context.duration > 5 }};"), "duration", Some(3)),
        (
            // A forbid that would error at evaluation (no `requester` in a request's context);
            // Cedar would skip it and allow: strict validation refuses it instead.
            "forbid erroring at evaluation",
            "@id(\"f\")\nforbid (principal, action, resource)\nwhen { context.requester == principal };".into(),
            "requester",
            Some(3),
        ),
        ("syntax", format!("{head}when {{ principal.roles.contains( }};"), "unexpected", Some(3)),
        ("no id", "permit (principal, action, resource);".into(), "no @id", None),
        ("two ids", format!("{head};\n{head};"), "two policies are named", Some(4)),
        ("unknown annotation", format!("@aprovals(\"2\")\n{head};"), "unknown annotation @aprovals", Some(1)),
        (
            "zero approvals",
            format!("@approvals(\"0\")\n{head};"),
            "only for `action == Portcullis::Action::\"use\"`",
            Some(1),
        ),
        ("words for approvals", format!("@approvals(\"two\")\n{head};"), "whole number", Some(1)),
        (
            "approvals on forbid",
            "@id(\"f\") @approvals(\"2\")\nforbid (principal, action, resource);".into(),
            "permit",
            Some(1),
        ),
        ("step-up method", format!("@step_up(\"sms\")\n{head};"), "not a step-up method", Some(1)),
        ("template", "@id(\"t\")\npermit (principal == ?principal, action, resource);".into(), "templates", None),
        (
            "unknown action",
            "@id(\"p\")\npermit (principal, action == Portcullis::Action::\"delete\", resource);".into(),
            "delete",
            Some(2),
        ),
    ];
    for (name, text, fragment, line) in cases {
        match PolicySet::compile(text) {
            Ok(_) => panic!("{name}: accepted"),
            Err(PolicyError::Invalid(problems)) => {
                let all = render_problems(&problems);
                assert!(all.contains(fragment), "{name}: {all:?} should mention {fragment:?}");
                if let Some(line) = line {
                    assert!(
                        problems.iter().any(|p| p.line == Some(*line) && p.column.is_some()),
                        "{name}: {problems:?} should point at line {line}"
                    );
                }
            }
            Err(other) => panic!("{name}: {other}"),
        }
    }
}

/// Cedar skips a policy whose evaluation errors; for a forbid that would allow what it forbids.
/// An overflow passes validation and errors only at run time: the decision must refuse.
#[test]
fn an_evaluation_error_refuses_instead_of_skipping_the_policy() {
    let text = r#"
@id("all") permit (principal, action == Portcullis::Action::"request", resource);
@id("overflowing-forbid") forbid (principal, action, resource)
when { context.weekday * 4611686018427387904 > 0 };
"#;
    let set = PolicySet::compile(text).unwrap();
    let u = person("u", &["requester"], &[]);
    // Thursday: 4 × 2^62 overflows.
    let d = request(&set, &u, &target("web", ""), 60, "2026-11-26T10:00:00Z", "10.0.0.1", "UTC");
    assert!(!d.allowed, "{d:?}");
    assert!(d.why.unwrap().contains("could not be evaluated"));
}

#[test]
fn problems_point_at_the_right_column() {
    assert_eq!(line_column("ab\ncde", 4), (2, 2));
    assert_eq!(line_column("x", 0), (1, 1));
    assert_eq!(line_column("é\nx", 3), (2, 1));
}

#[test]
fn human_durations() {
    for (secs, text) in [(0, "0s"), (45, "45s"), (3600, "1h"), (9000, "2h30m"), (90_061, "1d1h1m1s")] {
        assert_eq!(human_duration(secs), text);
    }
}

#[test]
fn time_zones_are_named_as_tz_names_them() {
    assert_eq!(time_zone_named(None).unwrap(), TimeZone::UTC);
    assert_eq!(time_zone_named(Some("")).unwrap(), TimeZone::UTC);
    assert!(time_zone_named(Some(":Europe/Berlin")).is_ok());
    assert!(time_zone_named(Some("Mars/Olympus")).unwrap_err().contains("Mars/Olympus"));
}

/// Decisions skip schema validation of their facts for speed: the facts must match the schema.
#[test]
fn decision_facts_match_the_schema() {
    let schema = schema().unwrap();
    let user = person("u", &["requester"], &["g"]);
    let other = person("v", &["approver"], &[]);
    let web = target("web", "prod");
    let vault = TargetFacts {
        secret: Some(SecretAttrs { kind: "password".into(), folder: "a/b".into() }),
        ..target("billing-db", "prod")
    };
    let at = at("2026-11-26T10:00:00Z");
    let cases = [
        ("request", &web, Access::Ssh),
        ("checkout", &vault, Access::Checkout),
        ("use", &vault, Access::Use),
        ("approve", &web, Access::Ssh),
        ("approve", &vault, Access::Checkout),
    ];
    for (action, t, access) in cases {
        let requester = (action == "approve").then(|| (uid("User", "v").unwrap(), access));
        let context = time_context(60, ip("10.0.0.1"), at, &TimeZone::UTC, requester).unwrap();
        let entities = vec![user_entity(&user).unwrap(), user_entity(&other).unwrap(), target_entity(t).unwrap()];
        Entities::from_entities(entities, Some(&schema)).unwrap();
        Request::new(
            uid("User", "u").unwrap(),
            uid("Action", action).unwrap(),
            resource_uid(t).unwrap(),
            context,
            Some(&schema),
        )
        .unwrap_or_else(|e| panic!("{action}: {e}"));
    }
    assert_eq!(ACTIONS.len(), 4, "every action is covered above");
}

/// Slicing by environment and action must not change a decision.
#[test]
fn slices_decide_like_the_whole_set() {
    let set = PolicySet::compile(EXAMPLES).unwrap();
    let eng = person("erin", &["requester"], &["engineers"]);
    for env in ["prod", "staging", "dev", ""] {
        let t = target("x", env);
        for secs in [60, 3 * 3600] {
            let q = RequestQuery {
                user: &eng,
                target: &t,
                access: Access::Ssh,
                duration_secs: secs,
                source_ip: ip("10.0.0.1"),
                at: at("2026-11-26T10:00:00Z"),
                time_zone: TimeZone::UTC,
            };
            let sliced = set.evaluate_request(&q, secs).unwrap();
            let context = time_context(secs, q.source_ip, q.at, &q.time_zone, None).unwrap();
            let request = Request::new(
                uid("User", "erin").unwrap(),
                uid("Action", "request").unwrap(),
                uid("Target", "x").unwrap(),
                context,
                None,
            )
            .unwrap();
            let entities =
                Entities::from_entities(vec![user_entity(&eng).unwrap(), target_entity(&t).unwrap()], None).unwrap();
            let whole = Authorizer::new().is_authorized(&request, &set.set, &entities);
            assert_eq!(sliced.decision, whole.decision(), "{env} {secs}");
            let mut reason: Vec<PolicyId> = whole.diagnostics().reason().cloned().collect();
            reason.sort_by_key(|id| set.name(id));
            assert_eq!(sliced.reason, reason, "{env} {secs}");
        }
    }
}

/// Secrets: check-out and use are their own actions on `Portcullis::Secret`, decided by kind,
/// folder, environment and tags; approvals can tell check-out from use; SSH access never
/// applies to a secret nor check-out to a target.
#[test]
fn secrets_are_decided_by_their_own_actions_and_facts() {
    const SECRETS: &str = r#"
@id("ci-uses-prod-tokens")
@approvals("2")
@approvers("leads")
permit (principal in Portcullis::Group::"ci", action == Portcullis::Action::"use",
        resource in Portcullis::Environment::"prod")
when { resource.kind == "api-token" && context.duration <= duration("1h") };

@id("dbas-check-out-db-passwords")
permit (principal in Portcullis::Group::"dbas", action == Portcullis::Action::"checkout", resource)
when { resource.kind == "database" || resource.tags.contains("db") };

@id("never-pci")
forbid (principal, action in [Portcullis::Action::"checkout", Portcullis::Action::"use"], resource)
when { resource.folder like "pci/*" };

@id("leads-approve-check-outs-with-a-key")
@step_up("webauthn")
permit (principal in Portcullis::Group::"leads", action == Portcullis::Action::"approve", resource)
when { context.access == "checkout" };

@id("leads-approve-the-rest")
permit (principal in Portcullis::Group::"leads", action == Portcullis::Action::"approve", resource)
when { context.access != "checkout" };
"#;
    let set = PolicySet::compile(SECRETS).unwrap();
    let secret = |name: &str, env: &str, kind: &str, folder: &str| TargetFacts {
        secret: Some(SecretAttrs { kind: kind.into(), folder: folder.into() }),
        tags: vec![],
        ..target(name, env)
    };
    let token = secret("deploy-token", "prod", "api-token", "deploy");
    let db = secret("billing-db", "prod", "database", "billing");
    let card = secret("card-db", "prod", "database", "pci/cards");
    let runner = person("runner", &["requester"], &["ci"]);
    let dba = person("dana", &["requester"], &["dbas"]);
    let lead = person("lee", &["approver"], &["leads"]);
    let decide = |user: &Person, t: &TargetFacts, access: Access, secs: u64| {
        set.decide_request(&RequestQuery {
            user,
            target: t,
            access,
            duration_secs: secs,
            source_ip: ip("10.0.0.5"),
            at: at("2026-11-26T10:00:00Z"),
            time_zone: TimeZone::UTC,
        })
    };
    type Case<'a> = (&'a Person, &'a TargetFacts, Access, u64, bool, &'a str);
    let cases: [Case; 7] = [
        (&runner, &token, Access::Use, 1800, true, "ci-uses-prod-tokens"),
        (&runner, &token, Access::Use, 7200, false, "longest use of deploy-token"),
        (&runner, &token, Access::Checkout, 60, false, "no policy permits runner to check out deploy-token"),
        (&runner, &db, Access::Use, 60, false, "no policy permits runner to use billing-db"),
        (&dba, &db, Access::Checkout, 60, true, "dbas-check-out-db-passwords"),
        (&dba, &card, Access::Checkout, 60, false, "forbidden by policy \"never-pci\""),
        (&dba, &token, Access::Checkout, 60, false, "no policy permits dana"),
    ];
    for (user, t, access, secs, allowed, why) in cases {
        let d = decide(user, t, access, secs).unwrap();
        assert_eq!(d.allowed, allowed, "{} {} {}: {d:?}", user.name, access.as_str(), t.name);
        let said = if allowed { d.policies.join(",") } else { d.why.clone().unwrap_or_default() };
        assert!(said.contains(why), "{} {} {}: {said:?} should say {why:?}", user.name, access.as_str(), t.name);
    }
    let granted = decide(&runner, &token, Access::Use, 1800).unwrap();
    assert_eq!((granted.approvals, granted.approver_groups.clone()), (2, vec!["leads".to_string()]));
    // A secret asked for as SSH access, or a target to check out: refused as a caller's error.
    assert!(decide(&dba, &db, Access::Ssh, 60).is_err());
    assert!(decide(&dba, &target("web", "prod"), Access::Checkout, 60).is_err());

    let approve = |t: &TargetFacts, access: Access| {
        set.decide_approval(&ApprovalQuery {
            approver: &lead,
            requester: &dba,
            target: t,
            access,
            duration_secs: 60,
            source_ip: ip("10.0.0.9"),
            at: at("2026-11-26T10:00:00Z"),
            time_zone: TimeZone::UTC,
        })
        .unwrap()
    };
    let checkout = approve(&db, Access::Checkout);
    assert!(checkout.allowed && checkout.step_up, "{checkout:?}");
    let used = approve(&token, Access::Use);
    assert!(used.allowed && !used.step_up, "{used:?}");
    // The defaults let requesters ask to check out or use any secret, with one approval.
    let defaults = PolicySet::compile(DEFAULT_POLICIES).unwrap();
    for access in [Access::Checkout, Access::Use] {
        let d = defaults
            .decide_request(&RequestQuery {
                user: &runner,
                target: &db,
                access,
                duration_secs: 3600,
                source_ip: ip("10.0.0.5"),
                at: at("2026-11-26T10:00:00Z"),
                time_zone: TimeZone::UTC,
            })
            .unwrap();
        assert!(d.allowed && d.approvals == 1, "{d:?}");
    }
}

/// A pipeline's use of a secret may need no approval; nothing else may. Where a stricter policy
/// also permits (production), its approvals count.
#[test]
fn only_use_may_go_without_an_approval_and_the_strictest_permit_wins() {
    let ci = r#"
@id("ci-uses-tokens")
@approvals("0")
permit (principal in Portcullis::Group::"ci", action == Portcullis::Action::"use", resource)
when { resource.kind == "api-token" && context.source_ip.isInRange(ip("10.8.0.0/16")) };

@id("prod-needs-a-lead")
@approvals("1")
@approvers("leads")
permit (principal in Portcullis::Group::"ci", action == Portcullis::Action::"use",
        resource in Portcullis::Environment::"prod");
"#;
    let set = PolicySet::compile(ci).unwrap();
    let runner = person("runner", &["service"], &["ci"]);
    let token = |env: &str| TargetFacts {
        secret: Some(SecretAttrs { kind: "api-token".into(), folder: String::new() }),
        ..target("deploy-token", env)
    };
    let decide = |t: &TargetFacts, from: &str| {
        set.decide_request(&RequestQuery {
            user: &runner,
            target: t,
            access: Access::Use,
            duration_secs: 600,
            source_ip: ip(from),
            at: at("2026-11-26T10:00:00Z"),
            time_zone: TimeZone::UTC,
        })
        .unwrap()
    };
    let staging = decide(&token("staging"), "10.8.1.2");
    assert!(staging.allowed && staging.approvals == 0, "{staging:?}");
    assert!(staging.summary().contains("without an approval"), "{}", staging.summary());
    let prod = decide(&token("prod"), "10.8.1.2");
    assert!(prod.allowed && prod.approvals == 1 && prod.approver_groups == ["leads"], "{prod:?}");
    assert!(!decide(&token("staging"), "192.0.2.1").allowed, "outside the runners' network");
    for action in ["request", "checkout"] {
        let text = format!(
            "@id(\"none\")\n@approvals(\"0\")\npermit (principal, action == Portcullis::Action::\"{action}\", resource);"
        );
        let refused = PolicySet::compile(&text).unwrap_err().to_string();
        assert!(refused.contains("only for `action == Portcullis::Action::\"use\"`"), "{action}: {refused}");
    }
    let any = PolicySet::compile("@id(\"any\")\n@approvals(\"0\")\npermit (principal, action, resource);");
    assert!(any.is_err());
}
