//! Access decisions in Cedar: may this user ask for this target now, for this long, from there;
//! how many approvals does it need and from whom; may this approver approve it, and must they
//! prove presence with a security key.
//!
//! Contract: pure. Depends on `cedar-policy`, `jiff` (calendar arithmetic) and `proto` (the
//! `Access` vocabulary); no IO, no clock, no database: the caller passes the facts (who, what,
//! when, from where, in which time zone).
//!
//! **Architecture Invariant:** a policy set is only ever used after it parsed, validated in
//! strict mode against [`SCHEMA`] and its annotations checked ([`PolicySet::compile`]); an
//! evaluation error in any policy makes the decision a refusal (Cedar itself would skip the
//! erroring policy, which for a `forbid` would mean allowing what it forbids).
//!
//! Vocabulary (kept stable: the server's checks and users' policies use these names):
//! - entities `Portcullis::User` (in `Portcullis::Group`; attributes `name`, `roles`),
//!   `Portcullis::Group`, `Portcullis::Target` (in `Portcullis::Environment`; attributes `name`,
//!   `environment`, `tags`), `Portcullis::Secret` (in `Portcullis::Environment`; attributes
//!   `name`, `environment`, `tags`, `kind`, `folder`), `Portcullis::Environment`; all identified
//!   by name;
//! - actions `Portcullis::Action::"request"` (SSH access to a target), `"checkout"` (a secret
//!   shown to its requester) and `"use"` (a secret injected into a process) — principal the
//!   requester — and `Portcullis::Action::"approve"` (principal the approver; `context.requester`
//!   the requester, `context.access` what was asked: `ssh`, `checkout` or `use`);
//! - context `duration`, `source_ip`, `now`, `weekday` (1 = Monday … 7 = Sunday), `time_of_day`
//!   (since local midnight in the server's time zone);
//! - annotations `@id("…")`, `@approvals("N")`, `@approvers("GROUP")`, `@step_up("webauthn")`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision, Effect, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    Policy, PolicyId, Request, ResourceConstraint, RestrictedExpression, Schema, ValidationMode, Validator,
};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// The Cedar schema every policy set is validated against.
pub const SCHEMA: &str = r#"
namespace Portcullis {
  entity Group;
  entity Environment;
  entity User in [Group] { name: String, roles: Set<String> };
  entity Target in [Environment] { name: String, environment: String, tags: Set<String> };
  entity Secret in [Environment] {
    name: String, environment: String, tags: Set<String>, kind: String, folder: String
  };

  action "request" appliesTo {
    principal: [User],
    resource: [Target],
    context: {
      duration: duration,
      source_ip: ipaddr,
      now: datetime,
      weekday: Long,
      time_of_day: duration,
    }
  };

  action "checkout" appliesTo {
    principal: [User],
    resource: [Secret],
    context: {
      duration: duration,
      source_ip: ipaddr,
      now: datetime,
      weekday: Long,
      time_of_day: duration,
    }
  };

  action "use" appliesTo {
    principal: [User],
    resource: [Secret],
    context: {
      duration: duration,
      source_ip: ipaddr,
      now: datetime,
      weekday: Long,
      time_of_day: duration,
    }
  };

  action "approve" appliesTo {
    principal: [User],
    resource: [Target, Secret],
    context: {
      requester: User,
      access: String,
      duration: duration,
      source_ip: ipaddr,
      now: datetime,
      weekday: Long,
      time_of_day: duration,
    }
  };
}
"#;

/// What a fresh server enforces: today's behaviour before policies existed. Any requester may
/// ask for any target, or to check out or use any secret, for up to 8 hours; one approval by
/// any approver (never their own request: the server enforces that whatever the policy says).
pub const DEFAULT_POLICIES: &str = r#"// Portcullis default policies: any requester may ask for any target, or to check out or use
// any secret, for up to 8 hours, and one approval from any approver grants it.

@id("requesters-up-to-8h")
@approvals("1")
permit (
  principal,
  action == Portcullis::Action::"request",
  resource
)
when { principal.roles.contains("requester") && context.duration <= duration("8h") };

@id("requesters-check-out-up-to-8h")
@approvals("1")
permit (
  principal,
  action == Portcullis::Action::"checkout",
  resource
)
when { principal.roles.contains("requester") && context.duration <= duration("8h") };

@id("requesters-use-up-to-8h")
@approvals("1")
permit (
  principal,
  action == Portcullis::Action::"use",
  resource
)
when { principal.roles.contains("requester") && context.duration <= duration("8h") };

@id("approvers-approve")
permit (
  principal,
  action == Portcullis::Action::"approve",
  resource
)
when { principal.roles.contains("approver") };
"#;

/// Largest `@approvals` a policy may ask for.
pub const MAX_APPROVALS: u32 = 9;
/// The only step-up method there is.
pub const STEP_UP_WEBAUTHN: &str = "webauthn";
/// Annotations a policy may carry; any other is refused (a misspelt `@aprovals` must not be
/// silently ignored).
const KNOWN_ANNOTATIONS: [&str; 5] = ["id", "approvals", "approvers", "step_up", "description"];
/// The longest request the what-if search considers (policies name far shorter ones).
const MAX_PROBE_SECS: u64 = 366 * 24 * 3600;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// The policy text was refused; each problem names its line and column where Cedar gave one.
    #[error("{}", render_problems(.0))]
    Invalid(Vec<Problem>),
    /// The facts of a decision could not be expressed (e.g. a malformed name). Not the user's
    /// policy's fault: a decision that meets this refuses.
    #[error("cannot evaluate policies: {0}")]
    Facts(String),
}

/// One reason a policy set was refused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// 1-based, when the problem has a place in the text.
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

fn render_problems(problems: &[Problem]) -> String {
    problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n")
}

/// Line and column (1-based) of a byte offset in `text`.
fn line_column(text: &str, offset: usize) -> (u32, u32) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.chars().count(), |nl| before[nl + 1..].chars().count()) + 1;
    (line as u32, column as u32)
}

/// Turns a Cedar diagnostic into problems: the message, its help, and the place of each label.
fn problems_of(text: &str, diagnostic: &dyn miette::Diagnostic) -> Vec<Problem> {
    let mut message = diagnostic.to_string();
    if let Some(help) = diagnostic.help() {
        message = format!("{message} ({help})");
    }
    let place = diagnostic.labels().and_then(|mut labels| labels.next()).map(|l| line_column(text, l.offset()));
    vec![Problem { line: place.map(|p| p.0), column: place.map(|p| p.1), message }]
}

/// The place of the `nth` (0-based) `@key("value")` annotation in `text`, for messages.
fn annotation_place(text: &str, key: &str, value: &str, nth: usize) -> Option<(u32, u32)> {
    let needle = format!("@{key}");
    let mut from = 0;
    let mut seen = 0;
    while let Some(found) = text[from..].find(&needle) {
        let at = from + found;
        let rest = &text[at + needle.len()..];
        let inner = rest.trim_start().strip_prefix('(').map(str::trim_start);
        if inner.is_some_and(|i| i.starts_with(&format!("\"{value}\""))) {
            if seen == nth {
                return Some(line_column(text, at));
            }
            seen += 1;
        }
        from = at + needle.len();
    }
    None
}

/// A policy set that parsed, validated in strict mode and whose annotations make sense.
pub struct PolicySet {
    text: String,
    set: cedar_policy::PolicySet,
    /// The policies that can apply to one action on targets of one environment (`None`: an
    /// environment no policy names). Cedar evaluates every policy it is given; slicing by what
    /// the scope rules out keeps a decision fast with a thousand policies loaded.
    slices: HashMap<(&'static str, Option<String>), cedar_policy::PolicySet>,
    /// The `@id` of each policy, by Cedar's id.
    names: HashMap<PolicyId, String>,
}

const ACTIONS: [&str; 4] = ["request", "checkout", "use", "approve"];

/// Whether `policy` applies to `use` and nothing else.
fn only_use(policy: &Policy) -> bool {
    let Ok(action) = uid("Action", "use") else { return false };
    match policy.action_constraint() {
        ActionConstraint::Eq(a) => a == action,
        ActionConstraint::In(list) => !list.is_empty() && list.iter().all(|a| *a == action),
        ActionConstraint::Any => false,
    }
}

/// Could `policy` apply to `action`?
fn scope_allows_action(policy: &Policy, action: &EntityUid) -> bool {
    match policy.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(a) => &a == action,
        // Our schema has no action groups: `in` is membership of the list.
        ActionConstraint::In(list) => list.contains(action),
    }
}

/// The one environment a policy's resource scope confines it to, if any (`resource in
/// Portcullis::Environment::"prod"`): a target is in exactly its own environment.
fn scope_environment(policy: &Policy) -> Option<String> {
    let env = match policy.resource_constraint() {
        ResourceConstraint::In(uid) | ResourceConstraint::IsIn(_, uid) => uid,
        _ => return None,
    };
    (env.type_name().to_string() == "Portcullis::Environment").then(|| env.id().unescaped().to_string())
}

fn build_slices(
    set: &cedar_policy::PolicySet,
) -> Result<HashMap<(&'static str, Option<String>), cedar_policy::PolicySet>, PolicyError> {
    let environments: BTreeSet<String> = set.policies().filter_map(scope_environment).collect();
    let mut slices = HashMap::new();
    for action in ACTIONS {
        let action_uid = uid("Action", action)?;
        let applicable: Vec<&Policy> = set.policies().filter(|p| scope_allows_action(p, &action_uid)).collect();
        let keys = std::iter::once(None).chain(environments.iter().cloned().map(Some));
        for env in keys {
            let mut slice = cedar_policy::PolicySet::new();
            for policy in applicable.iter().filter(|p| scope_environment(p).is_none_or(|e| Some(&e) == env.as_ref())) {
                slice.add((*policy).clone()).map_err(|e| PolicyError::Facts(e.to_string()))?;
            }
            slices.insert((action, env), slice);
        }
    }
    Ok(slices)
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet").field("policies", &self.names.len()).finish()
    }
}

fn schema() -> Result<Schema, PolicyError> {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(schema, _warnings)| schema)
        .map_err(|e| PolicyError::Facts(format!("the built-in schema does not parse: {e}")))
}

impl PolicySet {
    /// Parses, validates (strict) and checks the annotations of a policy text. Every policy
    /// needs a unique `@id`.
    pub fn compile(text: &str) -> Result<Self, PolicyError> {
        let schema = schema()?;
        let parsed = cedar_policy::PolicySet::from_str(text)
            .map_err(|errors| PolicyError::Invalid(errors.iter().flat_map(|e| problems_of(text, e)).collect()))?;
        if parsed.templates().next().is_some() {
            return Err(PolicyError::Invalid(vec![Problem {
                line: None,
                column: None,
                message: "templates (policies with ?principal or ?resource) are not supported".into(),
            }]));
        }
        let mut problems = Vec::new();
        let mut set = cedar_policy::PolicySet::new();
        let mut names = HashMap::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        // Cedar names policies policy0, policy1… in the order of the text: keep that order.
        let mut policies: Vec<_> = parsed.policies().collect();
        policies.sort_by_key(|p| p.id().to_string().trim_start_matches("policy").parse::<u64>().unwrap_or(u64::MAX));
        for (index, policy) in policies.into_iter().enumerate() {
            let Some(name) = policy.annotation("id").map(str::to_string) else {
                problems.push(Problem {
                    line: None,
                    column: None,
                    message: format!(
                        "policy number {} has no @id(\"…\"): every policy needs a name for messages",
                        index + 1
                    ),
                });
                continue;
            };
            let earlier = *seen.get(&name).unwrap_or(&0);
            seen.insert(name.clone(), earlier + 1);
            let at = annotation_place(text, "id", &name, earlier);
            let problem = |message: String| Problem { line: at.map(|p| p.0), column: at.map(|p| p.1), message };
            if name.trim().is_empty() || name.chars().any(char::is_control) {
                problems.push(problem("@id must be a non-empty name without control characters".into()));
                continue;
            }
            if earlier > 0 {
                problems.push(problem(format!("two policies are named {name:?}")));
                continue;
            }
            for (key, value) in policy.annotations() {
                let place = annotation_place(text, key, value, 0).or(at);
                let bad = |message: String| Problem { line: place.map(|p| p.0), column: place.map(|p| p.1), message };
                if !KNOWN_ANNOTATIONS.contains(&key) {
                    problems.push(bad(format!(
                        "policy {name:?}: unknown annotation @{key} (known: @{})",
                        KNOWN_ANNOTATIONS.join(", @")
                    )));
                    continue;
                }
                let permit_only = matches!(key, "approvals" | "approvers" | "step_up");
                if permit_only && policy.effect() != Effect::Permit {
                    problems.push(bad(format!("policy {name:?}: @{key} only means something on a permit policy")));
                }
                match key {
                    "approvals" => match value.parse::<u32>() {
                        Ok(n) if (1..=MAX_APPROVALS).contains(&n) => {}
                        // No human approval: only for a secret used by a pipeline (the server
                        // grants it to service accounts alone).
                        Ok(0) if only_use(policy) => {}
                        Ok(0) => problems.push(bad(format!(
                            "policy {name:?}: @approvals(\"0\") is only for `action == Portcullis::Action::\"use\"` \
                             (a pipeline using a secret); SSH access and check-outs need an approval"
                        ))),
                        _ => problems.push(bad(format!(
                            "policy {name:?}: @approvals({value:?}) must be a whole number from 1 to {MAX_APPROVALS}"
                        ))),
                    },
                    "approvers" if value.trim().is_empty() || value.chars().any(char::is_control) => {
                        problems.push(bad(format!("policy {name:?}: @approvers needs a group name")));
                    }
                    "step_up" if value != STEP_UP_WEBAUTHN => problems.push(bad(format!(
                        "policy {name:?}: @step_up({value:?}) is not a step-up method (use @step_up(\"{STEP_UP_WEBAUTHN}\"))"
                    ))),
                    _ => {}
                }
            }
            let id = PolicyId::new(&name);
            if let Err(e) = set.add(policy.new_id(id.clone())) {
                problems.push(problem(format!("policy {name:?}: {e}")));
                continue;
            }
            names.insert(id, name);
        }
        if problems.is_empty() {
            let validation = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
            for error in validation.validation_errors() {
                let mut found = problems_of(text, error);
                for p in &mut found {
                    p.message = p.message.replace("policy id", "policy");
                }
                problems.extend(found);
            }
        }
        if !problems.is_empty() {
            return Err(PolicyError::Invalid(problems));
        }
        let slices = build_slices(&set)?;
        Ok(Self { text: text.to_string(), set, slices, names })
    }

    /// The text this set was compiled from, as the admin wrote it.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn name(&self, id: &PolicyId) -> String {
        self.names.get(id).cloned().unwrap_or_else(|| id.to_string())
    }

    fn annotation(&self, id: &PolicyId, key: &str) -> Option<&str> {
        self.set.policy(id).and_then(|p| p.annotation(key))
    }

    /// May `q.user` ask for `q.target`, and what would it take to approve?
    pub fn decide_request(&self, q: &RequestQuery<'_>) -> Result<RequestDecision, PolicyError> {
        let outcome = self.evaluate_request(q, q.duration_secs)?;
        if outcome.errors.is_empty() && outcome.decision == Decision::Allow {
            let approvals =
                outcome.reason.iter().filter_map(|id| self.annotation(id, "approvals")?.parse::<u32>().ok()).max();
            let approver_groups: BTreeSet<String> =
                outcome.reason.iter().filter_map(|id| self.annotation(id, "approvers").map(str::to_string)).collect();
            // The strictest permitting policy sets the count: one asking for approvals wins over
            // one that asks for none.
            return Ok(RequestDecision {
                allowed: true,
                policies: outcome.reason.iter().map(|id| self.name(id)).collect(),
                approvals: approvals.unwrap_or(1),
                approver_groups: approver_groups.into_iter().collect(),
                why: None,
            });
        }
        let policies: Vec<String> = outcome.reason.iter().map(|id| self.name(id)).collect();
        let why = if !outcome.errors.is_empty() {
            format!("a policy could not be evaluated, so the request is refused: {}", outcome.errors.join("; "))
        } else if !policies.is_empty() {
            format!("forbidden by policy {}", quoted(&policies))
        } else {
            self.explain_no_permit(q)?
        };
        Ok(RequestDecision { allowed: false, policies, approvals: 0, approver_groups: Vec::new(), why: Some(why) })
    }

    /// Why nothing permits the request: the longest duration that would be permitted, if any.
    fn explain_no_permit(&self, q: &RequestQuery<'_>) -> Result<String, PolicyError> {
        let asked = human_duration(q.duration_secs);
        let permitted = |secs: u64| -> Result<Option<Vec<PolicyId>>, PolicyError> {
            let o = self.evaluate_request(q, secs)?;
            Ok((o.decision == Decision::Allow && o.errors.is_empty()).then_some(o.reason))
        };
        if q.duration_secs > 1
            && let Some(_) = permitted(1)?
        {
            // Largest permitted duration below the one asked for (policies cap it with `<=`).
            let (mut low, mut high) = (1u64, q.duration_secs.min(MAX_PROBE_SECS));
            while high - low > 1 {
                let mid = low + (high - low) / 2;
                if permitted(mid)?.is_some() { low = mid } else { high = mid }
            }
            let by = permitted(low)?.unwrap_or_default();
            return Ok(format!(
                "you asked for {asked}; the longest {} policy {} allows you now is {}",
                match q.access {
                    Access::Ssh => format!("access to {}", q.target.name),
                    Access::Checkout => format!("check-out of {}", q.target.name),
                    Access::Use => format!("use of {}", q.target.name),
                },
                quoted(&by.iter().map(|id| self.name(id)).collect::<Vec<_>>()),
                human_duration(low)
            ));
        }
        let what = match q.access {
            Access::Ssh => "request",
            Access::Checkout => "check out",
            Access::Use => "use",
        };
        Ok(format!(
            "no policy permits {} to {what} {} for {asked} now (at {} on {}, from {})",
            q.user.name,
            q.target.name,
            q.at.to_zoned(q.time_zone.clone()).strftime("%H:%M %Z"),
            q.at.to_zoned(q.time_zone.clone()).strftime("%A"),
            q.source_ip
        ))
    }

    fn evaluate_request(&self, q: &RequestQuery<'_>, duration_secs: u64) -> Result<Outcome, PolicyError> {
        check_access(q.access, q.target)?;
        let context = time_context(duration_secs, q.source_ip, q.at, &q.time_zone, None)?;
        let entities = vec![user_entity(q.user)?, target_entity(q.target)?];
        self.evaluate(uid("User", &q.user.name)?, action_of(q.access), q.target, context, entities)
    }

    /// May `q.approver` approve `q.requester`'s request for `q.target`? With a security key?
    pub fn decide_approval(&self, q: &ApprovalQuery<'_>) -> Result<ApprovalDecision, PolicyError> {
        check_access(q.access, q.target)?;
        let requester = uid("User", &q.requester.name)?;
        let context = time_context(q.duration_secs, q.source_ip, q.at, &q.time_zone, Some((requester, q.access)))?;
        let mut entities = vec![user_entity(q.approver)?, target_entity(q.target)?];
        if q.requester.name != q.approver.name {
            entities.push(user_entity(q.requester)?);
        }
        let outcome = self.evaluate(uid("User", &q.approver.name)?, "approve", q.target, context, entities)?;
        let policies: Vec<String> = outcome.reason.iter().map(|id| self.name(id)).collect();
        if outcome.errors.is_empty() && outcome.decision == Decision::Allow {
            let step_up = outcome.reason.iter().any(|id| self.annotation(id, "step_up") == Some(STEP_UP_WEBAUTHN));
            return Ok(ApprovalDecision { allowed: true, policies, step_up, why: None });
        }
        let why = if !outcome.errors.is_empty() {
            format!("a policy could not be evaluated, so the approval is refused: {}", outcome.errors.join("; "))
        } else if !policies.is_empty() {
            format!("forbidden by policy {}", quoted(&policies))
        } else {
            format!("no policy permits {} to approve requests for {}", q.approver.name, q.target.name)
        };
        Ok(ApprovalDecision { allowed: false, policies, step_up: false, why: Some(why) })
    }

    fn evaluate(
        &self,
        principal: EntityUid,
        action: &'static str,
        target: &TargetFacts,
        context: Context,
        entities: Vec<Entity>,
    ) -> Result<Outcome, PolicyError> {
        let slice = self
            .slices
            .get(&(action, Some(target.environment.clone())))
            .or_else(|| self.slices.get(&(action, None)))
            .ok_or_else(|| PolicyError::Facts(format!("no policy slice for {action}")))?;
        // The facts are built here to the schema's shape (the tests check it against the
        // schema), so they are not validated again on every decision.
        let request = Request::new(principal, uid("Action", action)?, resource_uid(target)?, context, None)
            .map_err(|e| PolicyError::Facts(e.to_string()))?;
        let entities = Entities::from_entities(entities, None).map_err(|e| PolicyError::Facts(e.to_string()))?;
        let response = Authorizer::new().is_authorized(&request, slice, &entities);
        let errors = response.diagnostics().errors().map(|e| e.to_string()).collect();
        let mut reason: Vec<PolicyId> = response.diagnostics().reason().cloned().collect();
        reason.sort_by_key(|id| self.name(id));
        Ok(Outcome { decision: response.decision(), reason, errors })
    }
}

struct Outcome {
    decision: Decision,
    /// The determining policies: the permits that matched (Allow) or the forbids that did (Deny).
    reason: Vec<PolicyId>,
    errors: Vec<String>,
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
}

/// `2h30m`, `45s`, `1d4h`: how people write durations.
pub fn human_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let parts = [(secs / 86_400, "d"), (secs % 86_400 / 3600, "h"), (secs % 3600 / 60, "m"), (secs % 60, "s")];
    parts.iter().filter(|(n, _)| *n > 0).map(|(n, unit)| format!("{n}{unit}")).collect()
}

fn uid(kind: &str, id: &str) -> Result<EntityUid, PolicyError> {
    let kind = if kind == "Action" { "Portcullis::Action".to_string() } else { format!("Portcullis::{kind}") };
    let type_name = EntityTypeName::from_str(&kind).map_err(|e| PolicyError::Facts(e.to_string()))?;
    Ok(EntityUid::from_type_name_and_id(type_name, EntityId::new(id)))
}

fn string_set(values: &[String]) -> RestrictedExpression {
    RestrictedExpression::new_set(values.iter().map(|v| RestrictedExpression::new_string(v.clone())))
}

fn user_entity(user: &Person) -> Result<Entity, PolicyError> {
    let attrs = HashMap::from([
        ("name".to_string(), RestrictedExpression::new_string(user.name.clone())),
        ("roles".to_string(), string_set(&user.roles)),
    ]);
    let parents = user.groups.iter().map(|g| uid("Group", g)).collect::<Result<HashSet<_>, _>>()?;
    Entity::new(uid("User", &user.name)?, attrs, parents).map_err(|e| PolicyError::Facts(e.to_string()))
}

/// `Portcullis::Target::"name"` or `Portcullis::Secret::"name"`.
fn resource_uid(target: &TargetFacts) -> Result<EntityUid, PolicyError> {
    uid(if target.secret.is_some() { "Secret" } else { "Target" }, &target.name)
}

/// SSH access is to targets, check-out and use to secrets: anything else is a caller's bug.
fn check_access(access: Access, target: &TargetFacts) -> Result<(), PolicyError> {
    if (access == Access::Ssh) == target.secret.is_none() {
        Ok(())
    } else {
        Err(PolicyError::Facts(format!("{} does not apply to {}", access.as_str(), target.name)))
    }
}

fn target_entity(target: &TargetFacts) -> Result<Entity, PolicyError> {
    let mut attrs = HashMap::from([
        ("name".to_string(), RestrictedExpression::new_string(target.name.clone())),
        ("environment".to_string(), RestrictedExpression::new_string(target.environment.clone())),
        ("tags".to_string(), string_set(&target.tags)),
    ]);
    if let Some(secret) = &target.secret {
        attrs.insert("kind".to_string(), RestrictedExpression::new_string(secret.kind.clone()));
        attrs.insert("folder".to_string(), RestrictedExpression::new_string(secret.folder.clone()));
    }
    let mut parents = HashSet::new();
    if !target.environment.is_empty() {
        parents.insert(uid("Environment", &target.environment)?);
    }
    Entity::new(resource_uid(target)?, attrs, parents).map_err(|e| PolicyError::Facts(e.to_string()))
}

/// The context both actions share: duration, source address, the instant and the local
/// weekday and time of day.
fn time_context(
    duration_secs: u64,
    source_ip: IpAddr,
    at: Timestamp,
    time_zone: &TimeZone,
    requester: Option<(EntityUid, Access)>,
) -> Result<Context, PolicyError> {
    let local = at.to_zoned(time_zone.clone());
    let since_midnight = i64::from(local.hour()) * 3600 + i64::from(local.minute()) * 60 + i64::from(local.second());
    let mut pairs = vec![
        ("duration".to_string(), RestrictedExpression::new_duration(format!("{duration_secs}s"))),
        ("source_ip".to_string(), RestrictedExpression::new_ip(source_ip.to_string())),
        ("now".to_string(), RestrictedExpression::new_datetime(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())),
        ("weekday".to_string(), RestrictedExpression::new_long(i64::from(local.weekday().to_monday_one_offset()))),
        ("time_of_day".to_string(), RestrictedExpression::new_duration(format!("{since_midnight}s"))),
    ];
    if let Some((requester, access)) = requester {
        pairs.push(("requester".to_string(), RestrictedExpression::new_entity_uid(requester)));
        pairs.push(("access".to_string(), RestrictedExpression::new_string(access.as_str().to_string())));
    }
    Context::from_pairs(pairs).map_err(|e| PolicyError::Facts(e.to_string()))
}

/// A user as policies see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
}

/// A target — or, with `secret`, a vault secret — as policies see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetFacts {
    pub name: String,
    pub environment: String,
    pub tags: Vec<String>,
    pub secret: Option<SecretAttrs>,
}

/// What a secret has besides a target's facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretAttrs {
    /// `password`, `ssh-key`, `tls`, … (the vault's kinds).
    pub kind: String,
    pub folder: String,
}

pub use portcullis_proto::Access;

/// The Cedar action that decides `access`.
fn action_of(access: Access) -> &'static str {
    match access {
        Access::Ssh => "request",
        Access::Checkout => "checkout",
        Access::Use => "use",
    }
}

/// Someone asks for access.
pub struct RequestQuery<'a> {
    pub user: &'a Person,
    pub target: &'a TargetFacts,
    pub access: Access,
    pub duration_secs: u64,
    /// As the server sees the caller.
    pub source_ip: IpAddr,
    pub at: Timestamp,
    /// The server's time zone, for `weekday` and `time_of_day`.
    pub time_zone: TimeZone,
}

/// Someone approves a request.
pub struct ApprovalQuery<'a> {
    pub approver: &'a Person,
    pub requester: &'a Person,
    pub target: &'a TargetFacts,
    pub access: Access,
    pub duration_secs: u64,
    /// The approver's address.
    pub source_ip: IpAddr,
    pub at: Timestamp,
    pub time_zone: TimeZone,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RequestDecision {
    pub allowed: bool,
    /// `@id`s of the determining policies: the permits that matched, or the forbids that did.
    pub policies: Vec<String>,
    /// Approvals needed (the largest `@approvals` among the permitting policies; 1 by default;
    /// 0 only from a `use` policy, which the server honours for service accounts alone).
    pub approvals: u32,
    /// Only members of every one of these groups count as approvers.
    pub approver_groups: Vec<String>,
    /// Why it was refused, for the requester.
    pub why: Option<String>,
}

impl RequestDecision {
    /// One line for people: begins with `allow` or `deny`.
    pub fn summary(&self) -> String {
        if self.allowed {
            let from = if self.approver_groups.is_empty() {
                String::new()
            } else {
                format!(" from members of {}", quoted(&self.approver_groups))
            };
            let n = self.approvals;
            if n == 0 {
                return format!(
                    "allow by {}: granted without an approval (service accounts only)",
                    quoted(&self.policies)
                );
            }
            format!("allow by {}: needs {n} approval{}{from}", quoted(&self.policies), if n == 1 { "" } else { "s" })
        } else {
            format!("deny: {}", self.why.as_deref().unwrap_or("no policy permits it"))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApprovalDecision {
    pub allowed: bool,
    pub policies: Vec<String>,
    /// The approval needs a fresh WebAuthn assertion.
    pub step_up: bool,
    pub why: Option<String>,
}

/// Reads a time zone name as `TZ` spells it (IANA name, or empty for UTC).
pub fn time_zone_named(name: Option<&str>) -> Result<TimeZone, String> {
    match name.map(str::trim).map(|n| n.trim_start_matches(':')) {
        None | Some("") | Some("UTC") => Ok(TimeZone::UTC),
        Some(name) => TimeZone::get(name).map_err(|e| format!("unknown time zone {name:?} in TZ: {e}")),
    }
}

#[cfg(test)]
mod tests;
