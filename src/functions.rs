//! The two functions of the app and what each does with an invocation.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::Config;
use crate::host::{Invocation, InvocationAnswer, InvocationFailure};

/// The functions this handler serves (folder names under `function-app/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FunctionName {
    OnResourceEvent,
    VerifyAttachments,
}

impl FunctionName {
    pub const ALL: [Self; 2] = [Self::OnResourceEvent, Self::VerifyAttachments];

    /// Function names are matched case-insensitively, as the host matches them.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(name))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnResourceEvent => "OnResourceEvent",
            Self::VerifyAttachments => "VerifyAttachments",
        }
    }

    /// The trigger binding's name in `function.json`.
    pub fn binding(self) -> &'static str {
        match self {
            Self::OnResourceEvent => "event",
            Self::VerifyAttachments => "timer",
        }
    }
}

/// The timer trigger's value.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TimerInfo {
    #[serde(rename = "Schedule", default)]
    pub schedule: Option<Value>,
    #[serde(rename = "ScheduleStatus", default)]
    pub schedule_status: Option<ScheduleStatus>,
    #[serde(rename = "IsPastDue", default)]
    pub is_past_due: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ScheduleStatus {
    #[serde(rename = "Last", default)]
    pub last: Option<String>,
    #[serde(rename = "Next", default)]
    pub next: Option<String>,
    #[serde(rename = "LastUpdated", default)]
    pub last_updated: Option<String>,
}

/// Everything an invocation needs; one per process, shared by all invocations.
pub struct Handler {
    pub config: Config,
}

impl Handler {
    pub fn new(config: Config) -> Self {
        Self { config }
    }

    pub async fn invoke(
        &self,
        invocation: Invocation,
    ) -> Result<InvocationAnswer, InvocationFailure> {
        match invocation.function {
            FunctionName::OnResourceEvent => Ok(self.on_resource_event(&invocation)),
            FunctionName::VerifyAttachments => Ok(self.verify_attachments(&invocation)),
        }
    }

    fn on_resource_event(&self, invocation: &Invocation) -> InvocationAnswer {
        let _ = &self.config;
        let value = match invocation
            .request
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|r| r.trigger_value("event"))
        {
            Ok(v) => v,
            Err(e) => return rejected(invocation, e.as_str(), &e.to_string()),
        };
        InvocationAnswer {
            logs: vec![format!("received {}", kind_of(&value))],
            ..InvocationAnswer::default()
        }
    }

    fn verify_attachments(&self, invocation: &Invocation) -> InvocationAnswer {
        let value = match invocation
            .request
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|r| r.trigger_value("timer"))
        {
            Ok(v) => v,
            Err(e) => return rejected(invocation, e.as_str(), &e.to_string()),
        };
        let timer: TimerInfo = match serde_json::from_value(value) {
            Ok(t) => t,
            Err(e) => {
                return rejected(
                    invocation,
                    "not_a_timer",
                    &format!("the timer value is not a TimerInfo: {e}"),
                );
            }
        };
        let mut logs = Vec::new();
        if timer.is_past_due {
            logs.push(
                "timer is past due (a run was missed, e.g. after a restart); verifying now"
                    .to_owned(),
            );
        }
        logs.push(format!(
            "would verify every (cluster, registry) pair in {} in {} mode",
            if self.config.subscriptions.is_empty() {
                "every visible subscription".to_owned()
            } else {
                format!("subscriptions {}", self.config.subscriptions.join(", "))
            },
            match self.config.mode {
                crate::model::Mode::Enforce => "enforce",
                crate::model::Mode::Audit => "audit",
            }
        ));
        InvocationAnswer {
            logs,
            return_value: json!({"pastDue": timer.is_past_due}),
            ..InvocationAnswer::default()
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    if v.is_array() {
        "an event array"
    } else {
        "an event"
    }
}

/// A malformed or irrelevant input: answered with success (retrying cannot help) and a recorded rejection.
fn rejected(invocation: &Invocation, code: &str, reason: &str) -> InvocationAnswer {
    tracing::warn!(
        function = invocation.function.as_str(),
        invocation_id = %invocation.invocation_id,
        rejection = code,
        reason,
        "invocation rejected"
    );
    InvocationAnswer {
        logs: vec![format!("rejected ({code}): {reason}")],
        return_value: json!({"rejected": code}),
        ..InvocationAnswer::default()
    }
}
