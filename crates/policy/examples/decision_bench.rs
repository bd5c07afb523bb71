//! Policy decision latency with 1,000 policies loaded, against the 2-policy default set in the
//! same run. `cargo run -p portcullis-policy --example decision_bench [POLICIES] [DECISIONS]`

use std::time::Instant;

use portcullis_policy::{Access, DEFAULT_POLICIES, Person, PolicySet, RequestQuery, TargetFacts};

/// `n` policies in the shapes admins write: per-environment and per-group permits with duration
/// caps and approvals, a few office-hours rules and network forbids.
fn many_policies(n: usize) -> String {
    let mut text = String::from(DEFAULT_POLICIES);
    for i in 0..n.saturating_sub(2) {
        let rule = match i % 4 {
            0 => format!(
                "@id(\"env-{i}\") @approvals(\"2\") @approvers(\"dbas-{i}\")\npermit (principal in Portcullis::Group::\"team-{i}\", action == Portcullis::Action::\"request\", resource in Portcullis::Environment::\"env-{i}\") when {{ context.duration <= duration(\"2h\") }};\n"
            ),
            1 => format!(
                "@id(\"hours-{i}\")\npermit (principal, action == Portcullis::Action::\"request\", resource) when {{ resource.tags.contains(\"tag-{i}\") && context.weekday <= 5 && context.time_of_day >= duration(\"9h\") && context.time_of_day < duration(\"18h\") }};\n"
            ),
            2 => format!(
                "@id(\"net-{i}\")\nforbid (principal, action == Portcullis::Action::\"request\", resource) when {{ resource.name == \"host-{i}\" && !context.source_ip.isInRange(ip(\"10.{}.0.0/16\")) }};\n",
                i % 250
            ),
            _ => format!(
                "@id(\"approve-{i}\") @step_up(\"webauthn\")\npermit (principal in Portcullis::Group::\"dbas-{i}\", action == Portcullis::Action::\"approve\", resource in Portcullis::Environment::\"env-{i}\");\n"
            ),
        };
        text.push_str(&rule);
    }
    text
}

fn median_and_p99(set: &PolicySet, decisions: usize) -> (f64, f64) {
    let user = Person { name: "alice".into(), roles: vec!["requester".into()], groups: vec!["team-4".into()] };
    let target = TargetFacts {
        name: "host-6".into(),
        environment: "env-4".into(),
        tags: vec!["tag-5".into()],
        ..Default::default()
    };
    let mut samples = Vec::with_capacity(decisions);
    for i in 0..decisions {
        let q = RequestQuery {
            user: &user,
            target: &target,
            access: Access::Ssh,
            duration_secs: 1800 + (i as u64 % 7),
            source_ip: "10.6.1.2".parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
            at: jiff::Timestamp::now(),
            time_zone: jiff::tz::TimeZone::UTC,
        };
        let started = Instant::now();
        let decision = set.decide_request(&q);
        samples.push(started.elapsed().as_secs_f64() * 1e6);
        assert!(decision.is_ok());
    }
    samples.sort_by(f64::total_cmp);
    (samples[samples.len() / 2], samples[samples.len() * 99 / 100])
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let decisions: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let text = many_policies(n);
    let started = Instant::now();
    let big = match PolicySet::compile(&text) {
        Ok(set) => set,
        Err(e) => panic!("the generated policies do not compile: {e}"),
    };
    let compile_ms = started.elapsed().as_secs_f64() * 1e3;
    let small = match PolicySet::compile(DEFAULT_POLICIES) {
        Ok(set) => set,
        Err(e) => panic!("{e}"),
    };
    // Interleave the two so both see the same machine noise.
    let mut big_runs = Vec::new();
    let mut small_runs = Vec::new();
    for _ in 0..5 {
        small_runs.push(median_and_p99(&small, decisions / 5));
        big_runs.push(median_and_p99(&big, decisions / 5));
    }
    let med = |runs: &mut Vec<(f64, f64)>, pick: fn(&(f64, f64)) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(pick).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (bm, bp) = (med(&mut big_runs, |r| r.0), med(&mut big_runs, |r| r.1));
    let (sm, sp) = (med(&mut small_runs, |r| r.0), med(&mut small_runs, |r| r.1));
    println!("policies loaded: {} (validated in {compile_ms:.0} ms)", big.len());
    println!("decision, {} policies: median {bm:.0} µs, p99 {bp:.0} µs", big.len());
    println!("decision, {} policies (baseline): median {sm:.0} µs, p99 {sp:.0} µs", small.len());
    println!("ratio (median): {:.1}x", bm / sm);
}
