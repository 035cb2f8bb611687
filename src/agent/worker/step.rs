//! One model step: check the budgets, pass the provider's gate (in-flight cap,
//! circuit breaker), call the model with retries, account the spend, and take the
//! answer into the conversation. A reply cut off by the output limit is not a final
//! answer: the model is asked to continue.

use std::time::Duration;

use super::Stop;
use super::turn::Turn;
use crate::agent::AgentHandle;
use crate::agent::state::Activity;
use crate::failure::Failure;
use crate::fleet::budget::{self, Owner};
use crate::model::{ModelRequest, Usage};
use crate::provider::ProviderError;
use crate::provider::retry::{RetryError, complete_through_gate};
use crate::store::event::{Event, is_cut_off};
use crate::text::short;

impl Turn<'_> {
    pub(super) async fn model_step(&mut self) -> Result<(), Stop> {
        let agent = self.agent;
        let settings = &agent.settings;
        check_budget(agent)?;
        self.steps += 1;
        let steps = self.steps;
        agent.update(|s| s.activity = Some(Activity::now(format!("calling model (step {steps})"))));
        let request = ModelRequest {
            model: &settings.model.model,
            system: &settings.system_prompt,
            messages: self.conversation.messages(),
            tools: &settings.tool_specs,
            max_tokens: settings.max_output_tokens,
        };
        // The call's worst case is held against the fleet's caps until it settles.
        let _reservation = agent
            .fleet
            .budget
            .reserve(worst_case(&request, settings.model.price))
            .map_err(|e| Stop::Failed(e.into()))?;
        let provider = settings.model.id.split(':').next().unwrap_or_default();
        let mut chat = self.trace.chat(provider, &request);
        let journal = |event: Event| {
            if !agent.cancel.is_cancelled() {
                agent.record(event);
            }
        };
        let mut on_retry = |attempt: u32, err: &ProviderError, wait: Duration| {
            tracing::warn!(agent = %settings.name, attempt, error = %err, ?wait, "model call failed; retrying");
            chat.retry(attempt, &err.to_string(), wait);
            journal(Event::Retry {
                attempt,
                error: err.to_string(),
                wait_ms: wait.as_millis() as u64,
            });
            let label = format!(
                "retrying model call in {:.1}s (retry {attempt}/{}): {}",
                wait.as_secs_f64(),
                settings.retry.max_retries,
                short(&err.to_string(), 80)
            );
            agent.update(|s| s.activity = Some(Activity::now(label)));
        };
        let mut on_wait = |why: String| agent.update(|s| s.activity = Some(Activity::now(why)));
        let gate = agent.fleet.gate(&settings.model.id);
        let call = complete_through_gate(
            self.provider,
            Some(&gate),
            &request,
            &settings.retry,
            self.token,
            &mut on_retry,
            &mut on_wait,
        );
        let waiting_on = format!("a model answer from {}", settings.model.id);
        let response = match self
            .within_stall(call, &waiting_on)
            .await
            .inspect_err(|_| chat.failed("stalled", "no answer within the stall timeout"))?
        {
            Ok(r) => r,
            Err(RetryError::Cancelled) => return Err(Stop::Cancelled),
            Err(RetryError::Failed(e)) => {
                chat.failed("provider_error", &e.to_string());
                return Err(Stop::Failed(Failure::ModelCall(e.to_string())));
            }
        };
        if agent.cancel.is_cancelled() {
            return Err(Stop::Cancelled);
        }
        let cost = settings.model.price.map(|p| p.cost(response.usage));
        charge(agent, response.usage, cost);
        chat.answered(
            &response.message,
            response.usage,
            &response.stop_reason,
            cost,
        );
        let continues = self.continues;
        let text = response.message.text();
        agent.with_record(self.index, |r| r.take_answer(&text, continues));
        let cut = is_cut_off(&response.message, &response.stop_reason);
        self.journal(Event::Model {
            message: response.message.clone(),
            usage: response.usage,
            stop_reason: response.stop_reason,
            cost_usd: None,
        });
        self.conversation.push_assistant(response.message);
        if cut {
            tracing::info!(agent = %settings.name, "reply cut off by the output limit; asking to continue");
            self.conversation.push_continue();
        }
        self.continues = cut;
        Ok(())
    }
}

/// Fails when `agent` or the fleet has no budget left.
pub(super) fn check_budget(agent: &AgentHandle) -> Result<(), Stop> {
    let spent = agent.peek(|s| s.spent());
    if let Some(e) = budget::exhausted(Owner::Agent(agent.name()), &agent.settings.caps, spent) {
        return Err(Stop::Failed(e.into()));
    }
    agent
        .fleet
        .budget
        .check()
        .map_err(|e| Stop::Failed(e.into()))
}

/// Count one model call's tokens and `cost` against `agent` and the fleet.
pub(super) fn charge(agent: &AgentHandle, usage: Usage, cost: Option<f64>) {
    spend(agent, Some(usage), cost, true);
}

/// Count spend against `agent` and the fleet: tokens and dollars, as one model call
/// (`step`: a step, and its input is the context size) or not.
pub(super) fn spend(agent: &AgentHandle, usage: Option<Usage>, cost: Option<f64>, step: bool) {
    let mut spent = (Default::default(), Default::default());
    agent.update(|s| {
        spent.0 = s.spent();
        if let Some(usage) = usage {
            s.tokens += usage;
        }
        if let (Some(usage), true) = (usage, step) {
            s.steps += 1;
            s.context_tokens = usage.input_tokens;
        }
        if let (Some(cost), Some(total)) = (cost, s.cost_usd.as_mut()) {
            *total += cost;
        }
        spent.1 = s.spent();
    });
    let tokens = usage.map_or(0, |u| u.input_tokens + u.output_tokens);
    agent.fleet.budget.charge(cost, tokens);
    let (before, after) = spent;
    if let Some(note) = budget::crossing(
        Owner::Agent(agent.name()),
        &agent.settings.caps,
        before,
        after,
    ) {
        agent.set_note(note);
    }
}

/// A model call's worst case: its input estimated from the request's size (about four
/// bytes a token, rounded up) plus the whole output limit, priced when the model is.
/// The size is summed from the parts, not serialized: this runs before every call,
/// and writing out the whole conversation a second time cost more than the estimate is
/// worth.
fn worst_case(request: &ModelRequest<'_>, price: Option<crate::pricing::Price>) -> budget::Spend {
    /// JSON framing of one block or tool (keys, quotes, braces), and of a tool's schema.
    const FRAMING: usize = 48;
    const SCHEMA: usize = 600;
    let blocks: usize = request
        .messages
        .iter()
        .flat_map(|m| &m.content)
        .map(|b| {
            FRAMING
                + match b {
                    crate::model::Block::Text { text } => text.len(),
                    crate::model::Block::ToolUse { id, name, input } => {
                        id.len() + name.len() + json_len(input)
                    }
                    crate::model::Block::ToolResult {
                        tool_use_id,
                        content,
                        ..
                    } => tool_use_id.len() + content.len(),
                }
        })
        .sum();
    let tools: usize = request
        .tools
        .iter()
        .map(|t| FRAMING + SCHEMA + t.name.len() + t.description.len())
        .sum();
    let bytes = request.system.len() + blocks + tools;
    let input = (bytes as u64).div_ceil(4);
    let output = u64::from(request.max_tokens);
    budget::Spend {
        cost_usd: price.map_or(0.0, |p| {
            (input as f64 * p.input + output as f64 * p.output) / 1_000_000.0
        }),
        tokens: input + output,
    }
}

/// About how many bytes `value` takes as JSON, without writing it out.
fn json_len(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 12,
        Value::String(s) => s.len() + 2,
        Value::Array(items) => 2 + items.iter().map(|v| json_len(v) + 1).sum::<usize>(),
        Value::Object(map) => {
            2 + map
                .iter()
                .map(|(k, v)| k.len() + 4 + json_len(v))
                .sum::<usize>()
        }
    }
}
